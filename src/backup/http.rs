//! The bucket client's HTTP: hyper with rustls on ring (kube's own stack), roots from the system's certificate
//! store. `object_store` takes it as its connector instead of its reqwest one (see `Cargo.toml`).

use http_body_util::BodyExt;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector as Tcp;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::ClientOptions;

/// Makes [`Hyper`] clients that trust the system's roots and, when given, the CA of `spec.backup.s3.caSecret`.
#[derive(Debug, Default)]
pub struct Connector {
    /// Extra trusted CA certificates (DER).
    pub ca: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Connector {
    /// The roots: the system's (none in an image without a certificate store) and the extra CA.
    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) =
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        tracing::debug!(added, extra = self.ca.len(), "bucket client roots");
        roots.add_parsable_certificates(self.ca.iter().cloned());
        roots
    }
}

impl HttpConnector for Connector {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<HttpClient> {
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?
        .with_root_certificates(self.roots())
        .with_no_client_auth();
        let tls = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient::new(Hyper(
            Client::builder(TokioExecutor::new()).build(tls),
        )))
    }
}

/// An HTTP/1.1 client over TCP or TLS.
#[derive(Debug)]
struct Hyper(Client<HttpsConnector<Tcp>, HttpRequestBody>);

#[async_trait::async_trait]
impl HttpService for Hyper {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = self.0.request(request).await.map_err(|e| {
            let kind = if e.is_connect() {
                HttpErrorKind::Connect
            } else {
                HttpErrorKind::Request
            };
            HttpError::new(kind, e)
        })?;
        let (parts, body) = response.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Decode, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}
