//! [`rekey_exec::parse_answer`], the plugin answer parser, on garbage: it never panics,
//! accepts only a protocol-1 `"ok": true` object from a plugin that exited 0, and every
//! error is one line naming the plugin with no secret of the request in it.

use proptest::prelude::*;
use rekey_api::ErrorKind;
use rekey_exec::parse_answer;

const LABEL: &str = "exec plugin /x/plugin: login";
const SECRETS: &[&str] = &["SECRET-pw-0123", "tok-SECRET-9876"];

/// Parses and checks what holds for every input; returns whether it was accepted.
fn check(stdout: &[u8], code: Option<i32>, stderr: &[u8]) -> bool {
    match parse_answer(LABEL, stdout, code, stderr, SECRETS) {
        Ok(answer) => {
            assert_eq!(code, Some(0), "accepted from a plugin that exited {code:?}");
            assert_eq!(answer.get("ok"), Some(&serde_json::Value::Bool(true)));
            assert_eq!(answer.get("protocol").and_then(|p| p.as_u64()), Some(1));
            true
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n') && !message.contains('\r'), "{message:?}");
            assert!(message.contains(LABEL), "{message:?}");
            for secret in SECRETS {
                assert!(!message.contains(secret), "a secret in {message:?}");
            }
            false
        }
    }
}

/// Answers built from JSON fragments: closer to what plugins print than random bytes.
fn answer_text() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("1".to_owned()),
        Just("2".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
        Just("\"SECRET-pw-0123\"".to_owned()),
        Just("\"line\\nSECRET-pw-0123\\r\\nmore\"".to_owned()),
        Just("{\"kind\":\"rejected\",\"message\":\"tok-SECRET-9876 refused\\nsecond line\"}".to_owned()),
        Just("{\"kind\":\"bogus\"}".to_owned()),
        Just("[1,{}]".to_owned()),
        "[ -~]{0,12}".prop_map(|s| serde_json::Value::String(s).to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| serde_json::json!(n).to_string()),
    ];
    let key = prop_oneof![
        Just("protocol"),
        Just("ok"),
        Just("error"),
        Just("doc"),
        Just("strategies"),
        Just("x")
    ];
    (proptest::collection::vec((key, value), 0..6), 0usize..4, "[ -~\n]{0,6}").prop_map(|(fields, cut, junk)| {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let mut text = format!("{{{}}}", body.join(","));
        // Sometimes truncated, sometimes trailed by junk.
        match cut {
            1 => text.truncate(text.len() / 2),
            2 => text.push_str(&junk),
            _ => {}
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(
        stdout in proptest::collection::vec(any::<u8>(), 0..256),
        code in proptest::option::of(-2i32..3),
        stderr in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        check(&stdout, code, &stderr);
    }

    #[test]
    fn json_like_answers_never_panic(text in answer_text(), code in proptest::option::of(0i32..2), stderr in "[ -~\n]{0,40}") {
        let stderr = format!("{stderr} SECRET-pw-0123\nlast tok-SECRET-9876");
        check(text.as_bytes(), code, stderr.as_bytes());
    }
}

#[test]
fn known_answers() {
    assert!(check(br#"{"protocol": 1, "ok": true}"#, Some(0), b""));
    assert!(!check(br#"{"protocol": 1, "ok": true}"#, Some(1), b"SECRET-pw-0123"));
    assert!(!check(br#"{"protocol": 2, "ok": true}"#, Some(0), b""));
    assert!(!check(br#"{"ok": true}"#, Some(0), b""));
    assert!(!check(b"not json SECRET-pw-0123", Some(0), b"SECRET-pw-0123\nboom"));
    assert!(!check(b"", None, b""));
    let rejected = parse_answer(
        LABEL,
        br#"{"protocol":1,"ok":false,"error":{"kind":"rejected","message":"bad SECRET-pw-0123\nkey"}}"#,
        Some(0),
        b"",
        SECRETS,
    )
    .unwrap_err();
    assert_eq!(rejected.kind(), ErrorKind::AuthRejected);
    assert!(rejected.to_string().contains("bad ****"), "{rejected}");
    // A secret split by a line break is masked whole.
    let split = parse_answer(
        LABEL,
        b"garbage",
        Some(3),
        b"start SECRET-pw-\n0123 end",
        &["SECRET-pw-\n0123"],
    )
    .unwrap_err();
    assert!(!split.to_string().contains("0123"), "{split}");
    let big = vec![b' '; (1 << 20) + 1];
    assert!(!check(&big, Some(0), b""));
}
