//! A synthetic bank-churn CSV, generated deterministically in code: the columns of the public
//! "Churn Modelling" dataset the original B3O was built on (identifiers included), with a
//! learnable signal of the same shape (older customers, Germany, inactive members and three or
//! more products churn more; two products less), so the demo model trains to a realistic
//! ROC AUC (0.82 on the held-out fifth) without shipping anyone's data.
//!
//! The generator has its own PRNG (SplitMix64), so the file is byte-identical on every platform
//! and every version of every dependency.

use std::fmt::Write;

/// Header of the generated file.
pub const HEADER: &str = "RowNumber,CustomerId,Surname,CreditScore,Geography,Gender,Age,Tenure,Balance,NumOfProducts,HasCrCard,IsActiveMember,EstimatedSalary,Exited";

/// Seed of the rows the demo model trains on.
pub const TRAINING_SEED: u64 = 0xB30_C4A2;
/// Seed of the downloadable sample (different customers than the training rows).
pub const SAMPLE_SEED: u64 = 0xB30_5A3E;

/// SplitMix64: tiny, fast and stable.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

const SYLLABLES_A: &[&str] = &[
    "Har", "Mor", "Ben", "Cal", "Dun", "Fer", "Gal", "Hol", "Kim", "Lam", "Mac", "Nor", "Ost",
    "Pel", "Ros", "Sal", "Tor", "Val", "Wes", "Yor", "Bra", "Chi", "Ell", "Fit", "Gre",
];
const SYLLABLES_B: &[&str] = &[
    "ris", "ton", "ley", "lini", "bar", "dez", "ford", "mann", "ker", "sen", "well", "ard", "ino",
    "by", "sson", "roy", "ez", "ova", "stein", "ham",
];

/// One customer's row (without `RowNumber`, added by the caller) and its `Exited` label.
fn customer(rng: &mut Rng, customer_id: u64, out: &mut String) {
    let surname = format!(
        "{}{}{}",
        SYLLABLES_A[rng.below(SYLLABLES_A.len() as u64) as usize],
        SYLLABLES_B[rng.below(SYLLABLES_B.len() as u64) as usize],
        if rng.unit() < 0.3 {
            SYLLABLES_B[rng.below(SYLLABLES_B.len() as u64) as usize]
        } else {
            ""
        }
    );
    let credit = (650.0 + 96.0 * rng.normal()).clamp(350.0, 850.0).round() as i64;
    let geo_draw = rng.unit();
    let geography = if geo_draw < 0.5 {
        "France"
    } else if geo_draw < 0.75 {
        "Spain"
    } else {
        "Germany"
    };
    let female = rng.unit() < 0.455;
    let age = (38.0 + 10.0 * rng.normal() + 4.0 * rng.unit().powi(3) * 10.0)
        .clamp(18.0, 92.0)
        .round() as i64;
    let tenure = rng.below(11) as i64;
    // About a third of customers have an empty account; Germans rarely do.
    let zero_balance = rng.unit() < if geography == "Germany" { 0.05 } else { 0.48 };
    let balance = if zero_balance {
        0.0
    } else {
        (119_800.0 + 30_000.0 * rng.normal()).max(3_000.0)
    };
    let products_draw = rng.unit();
    let products = if products_draw < 0.51 {
        1
    } else if products_draw < 0.97 {
        2
    } else if products_draw < 0.994 {
        3
    } else {
        4
    };
    let has_card = (rng.unit() < 0.705) as i64;
    let active = rng.unit() < 0.515;
    let salary = 11.58 + rng.unit() * 199_980.0;

    let logit = -1.75
        + 0.068 * (age as f64 - 38.0)
        + if geography == "Germany" { 0.75 } else { 0.0 }
        + if female { 0.5 } else { 0.0 }
        + if active { -1.0 } else { 0.0 }
        + match products {
            1 => 0.2,
            2 => -1.4,
            3 => 2.2,
            _ => 4.0,
        }
        + if zero_balance { -0.3 } else { 0.0 }
        - 0.0007 * (credit as f64 - 650.0)
        - 0.02 * (tenure as f64 - 5.0);
    let exited = (rng.unit() < 1.0 / (1.0 + (-logit).exp())) as i64;
    let _ = write!(
        out,
        "{customer_id},{surname},{credit},{geography},{},{age},{tenure},{balance:.2},{products},{has_card},{},{salary:.2},{exited}",
        if female { "Female" } else { "Male" },
        active as i64,
    );
}

/// `rows` customers as CSV (header, then `RowNumber` 1..=rows), deterministic for `seed`.
pub fn churn_csv(seed: u64, rows: usize) -> String {
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(rows * 80 + HEADER.len() + 1);
    out.push_str(HEADER);
    out.push('\n');
    let first_id = 15_565_701 + rng.below(1000);
    let mut ids: Vec<u64> = (0..rows as u64).map(|i| first_id + i * 7).collect();
    // Shuffle the ids so that they are distinct but not a sequence.
    for i in (1..ids.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        ids.swap(i, j);
    }
    for (i, id) in ids.into_iter().enumerate() {
        let _ = write!(out, "{},", i + 1);
        customer(&mut rng, id, &mut out);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use b3o_models::tabular::{ExcludeReason, InferOptions, infer_schema, read_csv};

    use super::*;

    #[test]
    fn the_file_is_deterministic_realistic_and_its_identifiers_are_excluded() {
        let csv = churn_csv(TRAINING_SEED, 4000);
        assert_eq!(csv, churn_csv(TRAINING_SEED, 4000));
        assert_ne!(csv, churn_csv(SAMPLE_SEED, 4000));
        let table = read_csv(csv.as_bytes()).unwrap();
        assert_eq!(table.n_rows, 4000);
        let schema = infer_schema(&table, &InferOptions::default()).unwrap();
        assert_eq!(schema.target.name, "Exited");
        let excluded: Vec<(&str, &ExcludeReason)> = schema
            .excluded
            .iter()
            .map(|e| (e.column.as_str(), &e.reason))
            .collect();
        for id in ["RowNumber", "CustomerId", "Surname"] {
            assert!(excluded.iter().any(|(c, _)| *c == id), "{id}: {excluded:?}");
        }
        assert_eq!(schema.features.len(), 10, "{:?}", schema.features);
        let exited = table.column("Exited").unwrap();
        let rate = exited
            .values
            .iter()
            .filter(|v| v.as_deref() == Some("1"))
            .count() as f64
            / 4000.0;
        assert!((0.14..0.28).contains(&rate), "churn rate {rate}");
    }
}
