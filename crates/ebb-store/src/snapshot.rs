//! Serde adapters for the domain types inside stored event snapshots (`events.snapshot`): amounts as
//! base-unit strings, statuses as their names. The snapshot is a storage format, read back only by
//! ebb; the API renders it in Cobo's shape.

use ebb_core::{Amount, OrderStatus, RefundSource, RefundStatus, TxDirection, TxStatus};
use serde::{de::Error, Deserialize, Deserializer, Serializer};

fn parse<'de, D: Deserializer<'de>, T>(d: D, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    f(&s).ok_or_else(|| D::Error::custom(format!("not a {what}: {s:?}")))
}

pub(crate) mod amount {
    use super::*;
    pub fn serialize<S: Serializer>(a: &Amount, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        parse(d, "base-unit amount", |s| Amount::from_base_units_str(s).ok())
    }
}

pub(crate) mod amount_opt {
    use super::*;
    pub fn serialize<S: Serializer>(a: &Option<Amount>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_some(&a.to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Amount>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| Amount::from_base_units_str(&s).map_err(|_| D::Error::custom(format!("not an amount: {s:?}"))))
            .transpose()
    }
}

macro_rules! named {
    ($module:ident, $ty:ty, $what:literal) => {
        pub(crate) mod $module {
            use super::*;
            pub fn serialize<S: Serializer>(v: &$ty, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(v.as_str())
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                parse(d, $what, <$ty>::parse)
            }
        }
    };
}

named!(refund_status, RefundStatus, "refund status");
named!(refund_source, RefundSource, "refund source");
named!(order_status, OrderStatus, "order status");
named!(tx_status, TxStatus, "transaction status");
named!(tx_direction, TxDirection, "transaction direction");
