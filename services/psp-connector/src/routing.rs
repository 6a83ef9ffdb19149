//! Which PSPs a payment tries, in which order (docs/architecture.md
//! "Orchestration").
//!
//! `ROUTING_FILE` names a TOML file of ordered rules; the first rule whose
//! conditions all hold gives the route, else `default` does:
//!
//! ```toml
//! default = ["psp-a", "psp-b"]
//!
//! [[rule]]
//! name = "amex-at-b"
//! brand = ["amex"]
//! psps = ["psp-b", "psp-a"]
//!
//! [[rule]]
//! name = "large-eur"
//! currency = ["EUR"]
//! amount_min = 100000
//! psps = ["psp-b"]
//! ```
//!
//! A condition left out matches everything; `amount_min`/`amount_max` are
//! inclusive, in minor units. The file is checked when the connector
//! starts: an unknown key or PSP, an empty list, a bad currency or brand,
//! or `amount_min > amount_max` stops it with a one-line error.

use std::collections::BTreeMap;

use platform::card::CardBrand;
use platform::psp::PspName;
use serde::Deserialize;

use crate::psp::PspClient;

/// The name `PSP_URL` (one PSP) goes by.
pub const SINGLE_PSP: &str = "psp-a";

/// The PSP clients by name.
pub struct Psps {
    clients: BTreeMap<PspName, PspClient>,
}

impl Psps {
    pub fn new(clients: impl IntoIterator<Item = (PspName, PspClient)>) -> Self {
        Self {
            clients: clients.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &PspName) -> Option<&PspClient> {
        self.clients.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &PspName> {
        self.clients.keys()
    }
}

/// What a rule can look at.
#[derive(Debug, Clone, Copy)]
pub struct Payment<'a> {
    pub amount: u64,
    pub currency: &'a str,
    pub brand: Option<CardBrand>,
    pub merchant: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    default: Vec<PspName>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    name: String,
    currency: Vec<String>,
    brand: Vec<CardBrand>,
    merchant: Vec<String>,
    amount_min: Option<u64>,
    amount_max: Option<u64>,
    psps: Vec<PspName>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingFile {
    default: Option<Vec<String>>,
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: Option<String>,
    #[serde(default)]
    currency: Vec<String>,
    #[serde(default)]
    brand: Vec<String>,
    #[serde(default)]
    merchant: Vec<String>,
    amount_min: Option<u64>,
    amount_max: Option<u64>,
    psps: Vec<String>,
}

impl Routing {
    /// Every payment tries `psps` in this order.
    pub fn in_order(psps: Vec<PspName>) -> Self {
        Self {
            default: psps,
            rules: Vec::new(),
        }
    }

    /// Parses and checks a routing file against the `known` PSPs. The
    /// error is one line, naming the rule at fault.
    pub fn parse(text: &str, known: &[PspName]) -> Result<Self, String> {
        let file: RoutingFile = toml::from_str(text)
            .map_err(|error| error.message().replace('\n', " ").trim().to_owned())?;
        let default = match file.default {
            Some(names) => psp_list(&names, known).map_err(|e| format!("default: {e}"))?,
            None => known.to_vec(),
        };
        let rules = file
            .rule
            .into_iter()
            .enumerate()
            .map(|(i, rule)| {
                let name = rule.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
                Rule::check(rule, name.clone(), known).map_err(|e| format!("rule {name:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { default, rules })
    }

    /// The route of `payment`, and the name of the rule that gave it
    /// (`default` when none did).
    pub fn route(&self, payment: &Payment<'_>) -> (&[PspName], &str) {
        self.rules
            .iter()
            .find(|rule| rule.matches(payment))
            .map_or((&self.default[..], "default"), |rule| {
                (&rule.psps[..], &rule.name)
            })
    }
}

impl Rule {
    fn check(rule: RuleFile, name: String, known: &[PspName]) -> Result<Self, String> {
        if let Some(bad) = rule
            .currency
            .iter()
            .find(|c| c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(format!(
                "currency {bad:?} is not a three-letter ISO 4217 code such as EUR"
            ));
        }
        let brand = rule
            .brand
            .iter()
            .map(|text| {
                CardBrand::parse(text).ok_or_else(|| {
                    let all: Vec<_> = CardBrand::ALL.iter().map(|b| b.as_str()).collect();
                    format!("brand {text:?} is not one of {}", all.join(", "))
                })
            })
            .collect::<Result<_, _>>()?;
        if let (Some(min), Some(max)) = (rule.amount_min, rule.amount_max)
            && min > max
        {
            return Err(format!("amount_min {min} is above amount_max {max}"));
        }
        Ok(Self {
            name,
            currency: rule.currency,
            brand,
            merchant: rule.merchant,
            amount_min: rule.amount_min,
            amount_max: rule.amount_max,
            psps: psp_list(&rule.psps, known).map_err(|e| format!("psps: {e}"))?,
        })
    }

    fn matches(&self, payment: &Payment<'_>) -> bool {
        let any_or =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        any_or(&self.currency, payment.currency)
            && any_or(&self.merchant, payment.merchant)
            && (self.brand.is_empty() || payment.brand.is_some_and(|b| self.brand.contains(&b)))
            && self.amount_min.is_none_or(|min| payment.amount >= min)
            && self.amount_max.is_none_or(|max| payment.amount <= max)
    }
}

/// A non-empty list of known PSPs without repeats.
fn psp_list(names: &[String], known: &[PspName]) -> Result<Vec<PspName>, String> {
    if names.is_empty() {
        return Err("the list of PSPs is empty".to_owned());
    }
    let mut psps: Vec<PspName> = Vec::new();
    for text in names {
        let name = PspName::parse(text)?;
        if !known.contains(&name) {
            let known: Vec<_> = known.iter().map(PspName::as_str).collect();
            return Err(format!("unknown PSP {name} (known: {})", known.join(", ")));
        }
        if psps.contains(&name) {
            return Err(format!("{name} is listed twice"));
        }
        psps.push(name);
    }
    Ok(psps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<PspName> {
        ["psp-a", "psp-b"]
            .map(|n| PspName::parse(n).unwrap())
            .to_vec()
    }

    fn payment(amount: u64, currency: &str, brand: CardBrand) -> Payment<'_> {
        Payment {
            amount,
            currency,
            brand: Some(brand),
            merchant: "m_1",
        }
    }

    const FILE: &str = r#"
        default = ["psp-a", "psp-b"]

        [[rule]]
        name = "amex-at-b"
        brand = ["amex"]
        psps = ["psp-b", "psp-a"]

        [[rule]]
        name = "large-eur"
        currency = ["EUR"]
        amount_min = 100000
        psps = ["psp-b"]

        [[rule]]
        merchant = ["m_2"]
        amount_max = 500
        psps = ["psp-b"]
    "#;

    #[test]
    fn the_first_matching_rule_routes() {
        let routing = Routing::parse(FILE, &known()).unwrap();
        let names = |(psps, rule): (&[PspName], &str)| {
            let psps: Vec<_> = psps.iter().map(PspName::as_str).collect();
            (psps.join(","), rule.to_owned())
        };
        assert_eq!(
            names(routing.route(&payment(1000, "EUR", CardBrand::Amex))),
            ("psp-b,psp-a".into(), "amex-at-b".into())
        );
        assert_eq!(
            names(routing.route(&payment(100_000, "EUR", CardBrand::Visa))),
            ("psp-b".into(), "large-eur".into())
        );
        assert_eq!(
            names(routing.route(&payment(99_999, "EUR", CardBrand::Visa))),
            ("psp-a,psp-b".into(), "default".into())
        );
        assert_eq!(
            names(routing.route(&payment(100_000, "USD", CardBrand::Visa))).1,
            "default"
        );
        let small = Payment {
            merchant: "m_2",
            ..payment(500, "USD", CardBrand::Visa)
        };
        assert_eq!(names(routing.route(&small)).1, "#3");
    }

    #[test]
    fn bad_files_are_one_line_errors() {
        let cases = [
            (
                "default = [\"psp-c\"]",
                "default: unknown PSP psp-c (known: psp-a, psp-b)",
            ),
            ("default = []", "default: the list of PSPs is empty"),
            (
                "[[rule]]\npsps = []",
                "rule \"#1\": psps: the list of PSPs is empty",
            ),
            (
                "[[rule]]\nname = \"x\"\ncurrency = [\"eur\"]\npsps = [\"psp-a\"]",
                "rule \"x\": currency \"eur\"",
            ),
            (
                "[[rule]]\nbrand = [\"diners\"]\npsps = [\"psp-a\"]",
                "brand \"diners\" is not one of visa",
            ),
            (
                "[[rule]]\namount_min = 5\namount_max = 4\npsps = [\"psp-a\"]",
                "amount_min 5 is above amount_max 4",
            ),
            (
                "[[rule]]\npsps = [\"psp-a\", \"psp-a\"]",
                "psp-a is listed twice",
            ),
            (
                "[[rule]]\ncurency = [\"EUR\"]\npsps = [\"psp-a\"]",
                "unknown field `curency`",
            ),
            ("default = \"psp-a\"", "invalid type"),
        ];
        for (text, expected) in cases {
            let error = Routing::parse(text, &known()).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains('\n'), "{error:?}");
        }
    }
}
