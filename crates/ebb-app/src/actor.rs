//! Who asks for a use case, and what that lets them do.

use ebb_store::keys::KeyRole;
use ebb_store::refunds::IdempotencyScope;

use crate::operators::AuditTrail;
use crate::AppError;

/// The party behind a request: the PSP (a PSP-wide key, the CLI, `ebb dev`) or one merchant (a
/// merchant-restricted key), the `initiator` recorded on what it creates, and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `Some(merchant)`: this actor sees and acts only on that merchant.
    pub merchant: Option<String>,
    /// Cobo's `initiator` value for objects this actor creates.
    pub initiator: String,
    pub role: KeyRole,
    /// An operator of the console: who to name in the audit log (none for API keys and the CLI).
    pub audit: Option<AuditTrail>,
}

impl Actor {
    pub fn psp(initiator: impl Into<String>) -> Self {
        Actor { merchant: None, initiator: initiator.into(), role: KeyRole::Operator, audit: None }
    }

    pub fn merchant(merchant_id: impl Into<String>, initiator: impl Into<String>) -> Self {
        Actor { merchant: Some(merchant_id.into()), initiator: initiator.into(), role: KeyRole::Operator, audit: None }
    }

    /// The scope idempotency keys live in: one per merchant actor, one for the PSP.
    pub fn idem_scope(&self) -> IdempotencyScope {
        match &self.merchant {
            Some(m) => IdempotencyScope::Merchant(m.clone()),
            None => IdempotencyScope::Psp,
        }
    }

    /// Refuses a PSP-only operation (or part of one: spending the PSP's balance, setting the PSP's
    /// fees) to a merchant actor, with a message that says nothing of the PSP's data.
    pub fn require_psp_for(&self, what: &str) -> Result<(), AppError> {
        match &self.merchant {
            None => Ok(()),
            Some(_) => Err(AppError::Forbidden(format!(
                "this API key is restricted to one merchant and cannot {what}; that needs a PSP-wide key"
            ))),
        }
    }

    /// Refuses a change to an approver: it reads, and approves or rejects refunds, nothing else.
    pub fn require_operator_for(&self, what: &str) -> Result<(), AppError> {
        match self.role {
            KeyRole::Operator => Ok(()),
            KeyRole::Approver => Err(AppError::Forbidden(format!(
                "this API key is an approver's: it may read, approve and reject refunds, and cannot {what}"
            ))),
        }
    }

    /// Checks a merchant the actor names; a merchant actor may only name its own (any other is "not
    /// found", so that it cannot learn which merchants exist).
    pub fn check_merchant(&self, merchant_id: &str) -> Result<(), AppError> {
        match &self.merchant {
            Some(m) if m != merchant_id => Err(AppError::not_found("merchant", merchant_id)),
            _ => Ok(()),
        }
    }

    /// The merchant a list is filtered by: the one asked for (a merchant actor may ask only for its
    /// own), else the merchant actor's, else none.
    pub fn merchant_filter(&self, asked: Option<String>) -> Result<Option<String>, AppError> {
        match asked.filter(|m| !m.is_empty()) {
            Some(m) => {
                self.check_merchant(&m)?;
                Ok(Some(m))
            }
            None => Ok(self.merchant.clone()),
        }
    }

    /// Whether this actor may see an object of `merchant_id`.
    pub fn sees(&self, merchant_id: Option<&str>) -> bool {
        self.merchant.as_deref().is_none_or(|m| merchant_id == Some(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merchant_actor_is_confined_to_its_merchant_and_the_psp_is_not() {
        let psp = Actor::psp("cli");
        let m = Actor::merchant("M1", "api_key_x");
        assert!(psp.require_psp_for("x").is_ok());
        assert!(matches!(m.require_psp_for("x"), Err(AppError::Forbidden(_))));
        assert!(m.check_merchant("M1").is_ok());
        assert!(matches!(m.check_merchant("M2"), Err(AppError::NotFound { .. })));
        assert_eq!(m.merchant_filter(None).unwrap(), Some("M1".into()));
        assert_eq!(psp.merchant_filter(Some(String::new())).unwrap(), None);
        assert!(m.merchant_filter(Some("M2".into())).is_err());
        assert_eq!(m.idem_scope(), IdempotencyScope::Merchant("M1".into()));
        assert_eq!(psp.idem_scope(), IdempotencyScope::Psp);
        assert!(psp.sees(None) && m.sees(Some("M1")) && !m.sees(Some("M2")) && !m.sees(None));
    }
}
