//! The CRD's admission rules (CEL `x-kubernetes-validations`) and the size limits that keep their cost within
//! the API server's budget. They are built from the same tables and limits [`crate::validate`] checks, so
//! the API server refuses at `kubectl apply` what the operator would refuse later (the operator still checks
//! everything itself: for clusters without CEL and objects written before the rules existed).

use kube::core::{Message, Rule};

use crate::api::directives::{
    DANGEROUS_DIRECTIVES, MANAGED_DIRECTIVES, OWNED_DIRECTIVES, REFUSED_DIRECTIVES,
};
use crate::api::quantity::Quantity;

/// The most Redis pods one instance may ask for. Each pod is a Redis server (the primary or a replica) with
/// its own claim; an instance that needs more is better split, and the bound keeps a typo (`10000000000`) from
/// being admitted as a huge StatefulSet.
pub const MAX_REPLICAS: i32 = 100;
/// The most directives `spec.config` may hold (Redis has about 200 in all; this also bounds rule cost).
pub const MAX_CONFIG_ENTRIES: usize = 64;
/// The longest directive name (the longest Redis directive has fewer than 40 characters).
pub const MAX_DIRECTIVE_LEN: usize = 64;
/// The longest directive value.
pub const MAX_CONFIG_VALUE_LEN: usize = 4096;
/// The longest image reference.
pub const MAX_IMAGE_LEN: usize = 1024;
/// The longest quantity string.
pub const MAX_QUANTITY_LEN: usize = 64;
/// The longest StorageClass name (a DNS subdomain).
pub const MAX_STORAGE_CLASS_LEN: usize = 253;

/// Message of the rule refusing two keys that name the same directive.
pub const DUPLICATE_DIRECTIVE: &str =
    "names the same directive as another key: directive names are case-insensitive";
/// Message of the rule on directive names.
pub const BAD_DIRECTIVE_NAME: &str =
    "directive names may only contain letters, digits, '-' and '_'";
/// Message of the rule refusing to remove storage.
pub const STORAGE_REMOVED: &str =
    "storage cannot be removed from an instance that has it; the claims and \
     their data are kept. Restore spec.storage to continue.";
/// Message of the rule on StorageClass names.
pub const BAD_STORAGE_CLASS: &str = "is not a valid StorageClass name (a lowercase DNS subdomain)";
/// Message of the rule on images.
pub const BAD_IMAGE: &str = "must not be empty or contain whitespace or control characters";
/// Message of the rule on quantity syntax.
pub const NOT_A_QUANTITY: &str = "is not a Kubernetes quantity (expected e.g. 1Gi, 512Mi)";
/// Message of the rule requiring a positive size.
pub const NOT_POSITIVE: &str = "must be greater than zero";
/// Message of the rule refusing sizes the API server would cap.
pub const TOO_LARGE: &str =
    "is too large: a Kubernetes quantity must be below 2^63-1 (just under 8Ei)";

/// `['a', 'b']`: a CEL list literal of directive names (they contain only `[a-z-]`, nothing to escape).
fn cel_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A rule on `spec.config` refusing, in any letter case, the directives of one [`REFUSED_DIRECTIVES`] group.
/// The message names the offending key, as [`crate::validate`] does.
fn refused_group(names: &[&str]) -> Rule {
    let why = REFUSED_DIRECTIVES
        .iter()
        .find(|(group, _)| *group == names)
        .map_or("is not allowed", |(_, why)| why);
    let list = cel_list(names);
    Rule::new(format!("!self.exists(k, k.lowerAscii() in {list})")).message(Message::Expression(
        format!("self.filter(k, k.lowerAscii() in {list})[0] + ' {why}'"),
    ))
}

/// `spec.config` may not set the directives the pod layout depends on.
pub fn owned_directives() -> Rule {
    refused_group(&OWNED_DIRECTIVES)
}

/// `spec.config` may not set directives that let clients write files or load code.
pub fn dangerous_directives() -> Rule {
    refused_group(&DANGEROUS_DIRECTIVES)
}

/// `spec.config` may not set the replication and authentication directives the operator manages.
pub fn managed_directives() -> Rule {
    refused_group(&MANAGED_DIRECTIVES)
}

/// Two keys of `spec.config` may not name the same directive (`maxmemory` and `MaxMemory`): Redis would
/// apply whichever comes last.
pub fn no_duplicate_directives() -> Rule {
    Rule::new("self.all(k, self.filter(j, j.lowerAscii() == k.lowerAscii()).size() == 1)").message(
        Message::Expression(format!(
            "self.filter(k, self.filter(j, j.lowerAscii() == k.lowerAscii()).size() > 1)[0] + ' {DUPLICATE_DIRECTIVE}'"
        )),
    )
}

/// Directive names are short words of letters, digits, `-` and `_`.
pub fn directive_names() -> Rule {
    Rule::new(format!(
        "self.all(k, k.size() <= {MAX_DIRECTIVE_LEN} && k.matches('^[A-Za-z0-9_-]+$'))"
    ))
    .message(Message::Message(format!(
        "{BAD_DIRECTIVE_NAME}, at most {MAX_DIRECTIVE_LEN} characters"
    )))
}

/// A transition rule on spec: storage, once set, stays (its claims hold the data).
pub fn storage_not_removed() -> Rule {
    Rule::new("has(self.storage) || !has(oldSelf.storage)")
        .message(STORAGE_REMOVED)
        .field_path(".storage")
}

/// Message of the rule keeping `spec.bootstrap` as the instance was created with.
pub const BOOTSTRAP_CHANGED: &str = "spec.bootstrap is set when an instance is created and cannot be added, \
     changed or removed afterwards: to restore a backup, create a new instance with spec.bootstrap.fromBackup, \
     then move clients to it";

/// A transition rule on spec: `bootstrap` stays as created (restoring into an instance that already serves is
/// refused).
pub fn bootstrap_unchanged() -> Rule {
    Rule::new(
        "has(self.bootstrap) == has(oldSelf.bootstrap) && (!has(self.bootstrap) || self.bootstrap == oldSelf.bootstrap)",
    )
    .message(BOOTSTRAP_CHANGED)
    .field_path(".bootstrap")
}

/// Message of the rule keeping a backup's spec as it was created.
pub const BACKUP_SPEC_IMMUTABLE: &str =
    "a RedisBackup's spec cannot change: create another RedisBackup";

/// A transition rule on a `RedisBackup`'s spec: it stays as created (a backup is taken once, of one instance).
pub fn backup_spec_immutable() -> Rule {
    Rule::new("self == oldSelf").message(BACKUP_SPEC_IMMUTABLE)
}

/// Message of the rule refusing an unauthenticated instance behind a NodePort or LoadBalancer Service.
pub const UNAUTHENTICATED_EXTERNAL: &str =
    "auth.enabled: false with a NodePort or LoadBalancer Service lets anyone who reaches a node or the load \
     balancer run every command: turn authentication on, keep the Services ClusterIP, or acknowledge it with \
     service.exposeWithoutAuth: true";

/// A rule on spec: no Service outside the cluster for an instance without authentication, unless
/// acknowledged (`service.exposeWithoutAuth`).
pub fn no_unauthenticated_external_service() -> Rule {
    Rule::new(
        "!has(self.auth) || !has(self.auth.enabled) || self.auth.enabled || !has(self.service) || \
         (has(self.service.exposeWithoutAuth) && self.service.exposeWithoutAuth) || \
         ((!has(self.service.type) || self.service.type == 'ClusterIP') && \
          (!has(self.service.replicas) || !has(self.service.replicas.type) || \
           self.service.replicas.type == 'ClusterIP'))",
    )
    .message(UNAUTHENTICATED_EXTERNAL)
    .field_path(".service")
}

/// The image is one word without whitespace or control characters (`\pZ` and `\p{Cc}` are exactly what
/// Rust's `char::is_whitespace` and `char::is_control` refuse in [`crate::validate`]).
pub fn image_is_one_word() -> Rule {
    Rule::new(r"self.matches('^[^\\pZ\\p{Cc}]+$')").message(BAD_IMAGE)
}

/// The storage size is a quantity.
pub fn size_is_quantity() -> Rule {
    Rule::new("isQuantity(self)").message(NOT_A_QUANTITY)
}

/// The storage size is above zero.
pub fn size_is_positive() -> Rule {
    Rule::new("!isQuantity(self) || quantity(self).isGreaterThan(quantity('0'))")
        .message(NOT_POSITIVE)
}

/// The storage size is below the API server's cap (which would silently turn `8Ei` into `2^63-1`).
pub fn size_is_representable() -> Rule {
    Rule::new(format!(
        "!isQuantity(self) || quantity(self).isLessThan(quantity('{}'))",
        Quantity::CEL_LIMIT
    ))
    .message(TOO_LARGE)
}

/// A transition rule: the storage size may grow, never shrink (claims cannot shrink).
pub fn size_never_shrinks() -> Rule {
    Rule::new(
        "!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0",
    )
    .message(Message::Expression(
        "'cannot shrink (from ' + oldSelf + ' to ' + self + '): claims only grow. Set it to ' + oldSelf + ' or more.'"
            .into(),
    ))
}

/// Kubernetes reserves this prefix of PriorityClass names for its own classes (`system-cluster-critical`,
/// `system-node-critical`): pods that preempt everything else to keep the cluster running.
pub const SYSTEM_PRIORITY_PREFIX: &str = "system-";
/// Message of the rule refusing the system PriorityClasses.
pub const SYSTEM_PRIORITY_CLASS: &str = "the system- PriorityClasses (system-cluster-critical, \
    system-node-critical) are kept for cluster components: a RedisInstance's pods could preempt them";

/// The StorageClass name is a DNS subdomain.
pub fn storage_class_name() -> Rule {
    Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message(BAD_STORAGE_CLASS)
}
