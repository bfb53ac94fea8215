//! Properties of the parsers every node file and bundle goes through, on generated input:
//! none panics, valid input survives a round trip, and the strict JSON reader agrees with
//! serde_json wherever no key repeats. (Coverage-guided fuzzing of the same functions lives
//! in `fuzz/`, outside CI.)

use proptest::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;

use multus_crds::bundle::NodeBundle;
use multus_crds::cni;
use multus_crds::contract::{FileMode, RefreshBefore};
use multus_crds::strict_json;

/// Any JSON value, a few levels deep, with keys and strings that include the characters
/// configs trip over.
fn json() -> impl Strategy<Value = Value> {
    let text = prop::collection::vec(
        prop_oneof![
            Just('a'),
            Just('/'),
            Just('.'),
            Just(' '),
            Just('\n'),
            Just('\u{0}'),
            Just('"'),
            Just('\\'),
            Just('é'),
            any::<char>(),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>());
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text.clone().prop_map(Value::String),
        prop_oneof![
            Just("cniVersion"),
            Just("type"),
            Just("plugins"),
            Just("ipam"),
            Just("master")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    text.clone(),
                    Just("cniVersion".to_string()),
                    Just("type".to_string()),
                    Just("plugins".to_string()),
                    Just("ipam".to_string())
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn the_cni_check_never_panics_and_what_it_accepts_it_accepts_again(value in json()) {
        let text = value.to_string();
        if let Ok(checked) = cni::check(&text) {
            let again = cni::to_file_text(&Value::Object(checked.value.clone())).unwrap();
            prop_assert!(cni::check(&again).is_ok(), "{again}");
        }
    }

    #[test]
    fn the_cni_check_never_panics_on_any_text(text in ".{0,200}") {
        let _ = cni::check(&text);
    }

    #[test]
    fn strict_json_reads_what_serde_json_writes_as_serde_json_reads_it(value in json()) {
        let text = serde_json::to_string(&value).unwrap();
        let expected: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(strict_json::parse(&text).unwrap(), expected);
    }

    #[test]
    fn contract_values_round_trip_and_any_text_is_parsed_or_refused(
        bits in 0u32..0o10000,
        percent in 1u8..100,
        amount in 1u32..1_000_000,
        unit in prop_oneof![Just('s'), Just('m'), Just('h')],
        text in ".{0,12}",
    ) {
        let mode: FileMode = format!("{bits:04o}").parse().unwrap();
        prop_assert_eq!(mode.bits(), bits);
        prop_assert_eq!(mode.to_string().parse::<FileMode>().unwrap(), mode);
        for refresh in [format!("{percent}%"), format!("{amount}{unit}")] {
            let parsed: RefreshBefore = refresh.parse().unwrap();
            prop_assert_eq!(parsed.to_string(), refresh);
        }
        let _ = text.parse::<FileMode>();
        let _ = text.parse::<RefreshBefore>();
    }

    #[test]
    fn reading_a_bundle_never_panics(
        data in prop::collection::btree_map(".{0,20}", ".{0,60}", 0..5),
        manifest in json(),
    ) {
        let mut data: BTreeMap<String, String> = data;
        let _ = NodeBundle::from_configmap_data(&data);
        data.insert("manifest.json".into(), manifest.to_string());
        let _ = NodeBundle::from_configmap_data(&data);
    }
}
