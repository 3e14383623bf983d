//! `NAME-connection`: what an application needs to reach the instance, in one Secret laid out as the Service
//! Binding specification asks (`type`, `provider`, then the well-known entries `host`, `port`, `username`,
//! `password`, `uri`), so an app mounts it (a projected binding) or takes it with `envFrom`. The read Service has
//! its own `readHost` and `readUri`. With TLS the URIs are `rediss://` and `ssl` is `true` (the CA is the
//! `ca.crt` of `spec.tls.secretName`).
//!
//! The password is the one in force on every pod: the reconcile writes this Secret only once the application
//! password of the auth Secret's current version is accepted everywhere (see `reconciler::auth`), so an app that
//! reads it never gets a password the servers refuse.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::ResourceExt;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::api::RedisInstance;
use crate::desired::metadata::metadata;
use crate::desired::redis_conf::REDIS_PORT;
use crate::names::{connection_secret_name, replicas_service_name};

/// The Secret's type under the Service Binding specification.
pub const SECRET_TYPE: &str = "servicebinding.io/redis";
/// The binding's `provider` entry.
pub const PROVIDER: &str = "redis-operator";
/// The user an application logs in as: Redis' `default` (see `crate::auth`).
pub const USERNAME: &str = "default";

/// RFC 3986 user-info: everything but unreserved characters is percent-encoded.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The entries of `NAME-connection` for `password` (`None` with authentication off: no credentials). The
/// password is kept as the Secret holds it (bytes), and percent-encoded in the URIs.
pub fn entries(ri: &RedisInstance, password: Option<&[u8]>) -> BTreeMap<String, Vec<u8>> {
    let name = ri.name_any();
    let namespace = ri.namespace().unwrap_or_default();
    let host = format!("{name}.{namespace}.svc");
    let read_host = format!("{}.{namespace}.svc", replicas_service_name(&name));
    let tls = ri.spec.tls.is_some();
    let scheme = if tls { "rediss" } else { "redis" };
    let login = password.map_or(String::new(), |p| {
        format!("{USERNAME}:{}@", percent_encode(p, USERINFO))
    });
    let uri = |host: &str| format!("{scheme}://{login}{host}:{REDIS_PORT}");
    let mut entries: BTreeMap<String, Vec<u8>> = [
        ("type", "redis".to_string()),
        ("provider", PROVIDER.to_string()),
        ("host", host.clone()),
        ("port", REDIS_PORT.to_string()),
        ("uri", uri(&host)),
        ("readHost", read_host.clone()),
        ("readUri", uri(&read_host)),
        ("ssl", tls.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_bytes()))
    .collect();
    if let Some(password) = password {
        entries.insert("username".into(), USERNAME.into());
        entries.insert("password".into(), password.to_vec());
    }
    entries
}

/// `NAME-connection`, owned by the instance.
pub fn secret(ri: &RedisInstance, owner: &OwnerReference, password: Option<&[u8]>) -> Secret {
    Secret {
        metadata: metadata(ri, connection_secret_name(&ri.name_any()), owner),
        type_: Some(SECRET_TYPE.into()),
        data: Some(
            entries(ri, password)
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::children::tests::instance;

    #[test]
    fn the_binding_names_both_services_and_encodes_the_password_in_the_uris() {
        let ri = instance("cache");
        let entries: BTreeMap<String, String> = entries(&ri, Some(b"p@ss:w/rd"))
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(entries["type"], "redis");
        assert_eq!(entries["provider"], "redis-operator");
        assert_eq!(entries["host"], "cache.ns.svc");
        assert_eq!(entries["port"], "6379");
        assert_eq!(entries["username"], "default");
        assert_eq!(entries["password"], "p@ss:w/rd");
        assert_eq!(
            entries["uri"],
            "redis://default:p%40ss%3Aw%2Frd@cache.ns.svc:6379"
        );
        assert_eq!(entries["readHost"], "cache-replicas.ns.svc");
        assert_eq!(
            entries["readUri"],
            "redis://default:p%40ss%3Aw%2Frd@cache-replicas.ns.svc:6379"
        );
        assert_eq!(entries["ssl"], "false");
    }

    #[test]
    fn without_authentication_there_are_no_credentials_and_with_tls_the_uris_are_rediss() {
        let mut ri = instance("cache");
        let text = |ri: &RedisInstance, password: Option<&[u8]>| -> BTreeMap<String, String> {
            entries(ri, password)
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
                .collect()
        };
        let open = text(&ri, None);
        assert!(!open.contains_key("password") && !open.contains_key("username"));
        assert_eq!(open["uri"], "redis://cache.ns.svc:6379");
        ri.spec.tls = Some(crate::api::TlsSpec {
            secret_name: "cache-tls".into(),
            client_auth: Default::default(),
        });
        let tls = text(&ri, Some(b"x"));
        assert_eq!(tls["uri"], "rediss://default:x@cache.ns.svc:6379");
        assert_eq!(tls["ssl"], "true");
        let secret = secret(&ri, &Default::default(), Some(b"x"));
        assert_eq!(secret.type_.as_deref(), Some(SECRET_TYPE));
        assert_eq!(secret.metadata.name.as_deref(), Some("cache-connection"));
    }
}
