//! Whole numbers as JSON Schema means them: an `integer` is any number without a fractional
//! part, so `3` and `3.0` are the same integer. Serde's integer types refuse `3.0`; a field read
//! with [`whole`] (or [`whole_opt`], [`whole_vec`]) takes both, and refuses `3.5` or a value out
//! of the type's range with a message naming what it got.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, Error, SeqAccess, Unexpected, Visitor};

/// The largest magnitude below which every float is exactly an integer (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

struct Whole<T>(PhantomData<T>);

impl<'de, T: TryFrom<u64> + TryFrom<i64>> Visitor<'de> for Whole<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number in range")
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
        if v.fract() != 0.0 || v.abs() > EXACT {
            return Err(E::invalid_value(Unexpected::Float(v), &self));
        }
        if v >= 0.0 {
            self.visit_u64(v as u64)
        } else {
            self.visit_i64(v as i64)
        }
    }
}

/// A whole number of type `T`.
pub fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + TryFrom<i64>,
{
    d.deserialize_any(Whole(PhantomData))
}

/// An optional whole number (`null` or absent: `None`).
pub fn whole_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + TryFrom<i64>,
{
    #[derive(serde::Deserialize)]
    struct Wrap<T: TryFrom<u64> + TryFrom<i64>>(#[serde(deserialize_with = "whole")] T);
    let wrapped: Option<Wrap<T>> = serde::Deserialize::deserialize(d)?;
    Ok(wrapped.map(|Wrap(v)| v))
}

/// An optional list of whole numbers.
pub fn whole_vec<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + TryFrom<i64>,
{
    struct List<T>(PhantomData<T>);
    impl<'de, T: TryFrom<u64> + TryFrom<i64>> Visitor<'de> for List<T> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of whole numbers")
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            #[derive(serde::Deserialize)]
            struct Item<T: TryFrom<u64> + TryFrom<i64>>(#[serde(deserialize_with = "whole")] T);
            let mut out = Vec::new();
            while let Some(Item(v)) = seq.next_element::<Item<T>>()? {
                out.push(v);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(List(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Body {
        #[serde(deserialize_with = "whole")]
        n: u32,
        #[serde(default, deserialize_with = "whole_opt")]
        v: Option<i32>,
        #[serde(default, deserialize_with = "whole_vec")]
        list: Option<Vec<u32>>,
    }

    fn parse(text: &str) -> Result<Body, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_numbers_are_whole_whatever_their_spelling() {
        let body = parse(r#"{"n": 3.0, "v": -2, "list": [1, 2.0, 1e2]}"#).expect("whole");
        assert_eq!(
            body,
            Body {
                n: 3,
                v: Some(-2),
                list: Some(vec![1, 2, 100])
            }
        );
        assert_eq!(parse(r#"{"n": 7, "v": null}"#).map(|b| b.v), Ok(None));
        assert_eq!(parse(r#"{"n": 7}"#).map(|b| b.list), Ok(None));
    }

    #[test]
    fn fractions_and_out_of_range_values_are_refused() {
        assert!(parse(r#"{"n": 3.5}"#).is_err_and(|e| e.contains("3.5")));
        assert!(parse(r#"{"n": -1}"#).is_err_and(|e| e.contains("-1")));
        assert!(parse(r#"{"n": 4294967296}"#).is_err());
        assert!(parse(r#"{"n": 1, "list": [0.5]}"#).is_err());
        assert!(parse(r#"{"n": "3"}"#).is_err());
    }
}
