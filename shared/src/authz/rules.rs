//! The compiled authorization policy of a route (built from `policies.authorization` by the
//! config compiler; immutable).

use super::ClaimPath;
use crate::snapshot::Cidr;

/// How a rule set is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMode {
    /// Skipped.
    Off,
    /// Evaluated; a deny is logged and the request goes on.
    Shadow,
    /// Evaluated; a deny ends the request.
    Enforce,
}

impl RuleMode {
    /// `off`, `shadow` or `enforce`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::Off => "off",
            RuleMode::Shadow => "shadow",
            RuleMode::Enforce => "enforce",
        }
    }
}

/// Client networks for an API or route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRule {
    /// Its mode.
    pub mode: RuleMode,
    /// When not empty, only these networks pass.
    pub allow: Vec<Cidr>,
    /// These networks never pass.
    pub deny: Vec<Cidr>,
}

/// An active subscription is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRule {
    /// Its mode.
    pub mode: RuleMode,
}

/// The credential's environment must be the request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentRule {
    /// Its mode.
    pub mode: RuleMode,
    /// The token claim naming the environment (API keys carry it in their record).
    pub claim: ClaimPath,
}

/// Required scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRule {
    /// Its mode.
    pub mode: RuleMode,
    /// All of these are required.
    pub required: Vec<String>,
    /// Where the caller's scopes are; None: `scope` / `scp` as authentication read them.
    pub claim: Option<ClaimPath>,
}

/// A class of endpoint, for role checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// `GET`, `HEAD`, `OPTIONS`.
    Read,
    /// Any other method.
    Write,
    /// Only where configured.
    Admin,
}

impl MethodClass {
    /// The class of a request method.
    pub fn of(method: &str) -> MethodClass {
        match method {
            "GET" | "HEAD" | "OPTIONS" => MethodClass::Read,
            _ => MethodClass::Write,
        }
    }

    /// `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodClass::Read => "read",
            MethodClass::Write => "write",
            MethodClass::Admin => "admin",
        }
    }
}

/// Roles per method class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRule {
    /// Its mode.
    pub mode: RuleMode,
    /// Where the caller's roles are.
    pub claim: ClaimPath,
    /// Roles for read methods (empty: none needed).
    pub read: Vec<String>,
    /// Roles for write methods (empty: none needed).
    pub write: Vec<String>,
    /// Roles for admin endpoints (empty: none needed).
    pub admin: Vec<String>,
    /// The endpoints' class when it is not the method's.
    pub class: Option<MethodClass>,
}

impl RoleRule {
    /// The roles that may use endpoints of `class`.
    pub fn roles_for(&self, class: MethodClass) -> &[String] {
        match class {
            MethodClass::Read => &self.read,
            MethodClass::Write => &self.write,
            MethodClass::Admin => &self.admin,
        }
    }
}

/// A route's authorization policy: each rule set from the most specific config level that
/// sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzPolicy {
    /// API/route IP lists.
    pub ip: Option<IpRule>,
    /// Subscription requirement.
    pub subscription: Option<SubscriptionRule>,
    /// Environment isolation.
    pub environment: Option<EnvironmentRule>,
    /// Required scopes.
    pub scopes: Option<ScopeRule>,
    /// Required roles.
    pub roles: Option<RoleRule>,
    /// Answer enforced denies with 404.
    pub hide_with_404: bool,
    /// The endpoints' data classification (Cedar's `resource.classification`).
    pub classification: String,
    /// Cedar policies.
    #[cfg(feature = "cedar")]
    pub abac: Option<super::cedar::AbacRule>,
}

impl AuthzPolicy {
    /// Whether any rule set would be evaluated (a policy of only `off` rules is skipped).
    pub fn is_active(&self) -> bool {
        let on = |m: Option<RuleMode>| m.is_some_and(|m| m != RuleMode::Off);
        on(self.ip.as_ref().map(|r| r.mode))
            || on(self.subscription.as_ref().map(|r| r.mode))
            || on(self.environment.as_ref().map(|r| r.mode))
            || on(self.scopes.as_ref().map(|r| r.mode))
            || on(self.roles.as_ref().map(|r| r.mode))
            || self.has_abac()
    }

    /// Whether a Cedar rule set is evaluated (only then does the request context, such as the
    /// client's country, need to be read).
    #[cfg(feature = "cedar")]
    pub fn has_abac(&self) -> bool {
        self.abac.as_ref().is_some_and(|r| r.mode != RuleMode::Off)
    }

    /// Whether a Cedar rule set is evaluated: never without the `cedar` feature.
    #[cfg(not(feature = "cedar"))]
    pub fn has_abac(&self) -> bool {
        false
    }

    /// Whether the subscription rule is evaluated (the snapshot is needed).
    pub fn needs_snapshot(&self) -> bool {
        self.subscription
            .as_ref()
            .is_some_and(|r| r.mode != RuleMode::Off)
    }
}
