//! The configuration checked and compiled once, when the target is built: templates
//! parsed, header names validated, the rules about secrets in paths and about which
//! step each strategy needs enforced.

use crate::config::{HttpTargetConfig, StepConfig};
use crate::template::{JsonTemplate, Template, CREDENTIAL};
use rekey_api::document::PASSWORD;
use rekey_api::{ProviderError, ProviderResult, Strategy};
use reqwest::header::{HeaderName, HeaderValue};
use std::net::IpAddr;
use std::time::Duration;

/// Which step a request belongs to (named in every error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepName {
    Create,
    Apply,
    Login,
    Revoke,
    Preflight,
    List,
}

impl StepName {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StepName::Create => "create",
            StepName::Apply => "apply",
            StepName::Login => "login",
            StepName::Revoke => "revoke",
            StepName::Preflight => "preflight",
            StepName::List => "list",
        }
    }

    /// Whether the request is sent with the target's (management) headers.
    pub(crate) fn management(self) -> bool {
        self != StepName::Login
    }
}

/// A request body.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    None,
    Json(JsonTemplate),
    Form(Vec<(String, Template)>),
}

/// One compiled step.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub name: StepName,
    pub method: reqwest::Method,
    pub path: Template,
    /// The path as shown in messages: the template, or `/…` when it may hold secrets.
    pub path_label: String,
    pub headers: Vec<(HeaderName, Template)>,
    pub basic: Option<(Template, Template)>,
    pub body: Body,
    /// Success statuses; empty means any 2xx.
    pub ok: Vec<u16>,
    /// `login`: statuses meaning the secret was refused.
    pub rejected: Vec<u16>,
    /// `create`: (document field, JSON pointer); `list`: the same within each item.
    pub fields: Vec<(String, String)>,
    /// `list`: pointer to the array of items.
    pub items: String,
    /// `list`: (item field, template it must equal).
    pub mine: Vec<(String, Template)>,
}

impl Step {
    pub(crate) fn is_ok(&self, status: u16) -> bool {
        if self.ok.is_empty() {
            (200..300).contains(&status)
        } else {
            self.ok.contains(&status)
        }
    }

    /// Every placeholder the step uses.
    pub(crate) fn placeholders(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.path.fields().collect();
        for (_, t) in &self.headers {
            out.extend(t.fields());
        }
        if let Some((u, p)) = &self.basic {
            out.extend(u.fields());
            out.extend(p.fields());
        }
        match &self.body {
            Body::None => {}
            Body::Json(j) => out.extend(j.fields()),
            Body::Form(items) => items.iter().for_each(|(_, t)| out.extend(t.fields())),
        }
        out
    }
}

/// The whole target, compiled.
#[derive(Debug)]
pub(crate) struct Plan {
    /// `base_url` without a trailing `/` (no user info, query or fragment: safe to show).
    pub base: String,
    pub timeout: Duration,
    pub headers: Vec<(HeaderName, Template)>,
    /// The management credential as basic authentication.
    pub basic: Option<(Template, Template)>,
    /// Secret fields, `password` included.
    pub secret_fields: Vec<String>,
    /// The first configured secret field when it is not `password` (see
    /// [`crate::template::Values::primary`]).
    pub primary: Option<String>,
    pub create: Option<Step>,
    pub apply: Option<Step>,
    pub login: Step,
    pub revoke: Option<Step>,
    pub preflight: Option<Step>,
    pub list: Option<Step>,
    pub settle: Duration,
    pub retries: u32,
    pub max_wait: Duration,
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_input(format!("http target: {}", message.into()))
}

fn valid_field(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `base_url` for messages and `Debug`: scheme, host, port and path only.
pub(crate) fn shown_base(base_url: &str) -> String {
    match reqwest::Url::parse(base_url.trim()) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn headers(map: &std::collections::BTreeMap<String, String>, at: &str) -> ProviderResult<Vec<(HeaderName, Template)>> {
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("{at}: `{name}` is not a valid HTTP header name")))?;
        let template = Template::parse(value, &format!("{at}.{name}")).map_err(invalid)?;
        // A literal value is checked now; values with placeholders when rendered. The
        // error never quotes the value (it is usually a token).
        if template.is_literal() && HeaderValue::from_str(value).is_err() {
            return Err(invalid(format!(
                "{at}.{name}: the value holds characters not allowed in an HTTP header (a line break?)"
            )));
        }
        out.push((header, template));
    }
    Ok(out)
}

fn step(config: &StepConfig, name: StepName, secret_fields: &[String]) -> ProviderResult<Step> {
    let at = name.as_str();
    let method = match config.method.trim().to_ascii_uppercase().as_str() {
        "GET" => reqwest::Method::GET,
        "POST" => reqwest::Method::POST,
        "PUT" => reqwest::Method::PUT,
        "PATCH" => reqwest::Method::PATCH,
        "DELETE" => reqwest::Method::DELETE,
        "HEAD" => reqwest::Method::HEAD,
        other => {
            return Err(invalid(format!(
                "{at}.method `{other}` is not one of GET, POST, PUT, PATCH, DELETE, HEAD"
            )))
        }
    };
    if !config.path.starts_with('/') {
        return Err(invalid(format!("{at}.path must start with `/`")));
    }
    if config.path.contains(['#', ' ', '\n', '\r']) {
        return Err(invalid(format!("{at}.path holds a space, a line break or `#`")));
    }
    let path = Template::parse(&config.path, &format!("{at}.path")).map_err(invalid)?;
    if !config.path_secret {
        if let Some(secret) = path.fields().find(|f| secret_fields.iter().any(|s| s == f)) {
            return Err(invalid(format!(
                "{at}.path uses the secret field `{{{{{secret}}}}}`: secrets in URLs end up in access logs; send it \
                 in a header or the body, or set `path_secret = true` on this step if the service leaves no choice"
            )));
        }
    }
    let path_label = if config.path_secret {
        "/…".to_owned()
    } else {
        config.path.clone()
    };
    let basic = match &config.basic {
        None => None,
        Some(b) => Some((
            Template::parse(&b.username, &format!("{at}.basic.username")).map_err(invalid)?,
            Template::parse(&b.password, &format!("{at}.basic.password")).map_err(invalid)?,
        )),
    };
    let body = match (&config.json, &config.form) {
        (Some(_), Some(_)) => return Err(invalid(format!("{at}: give `json` or `form`, not both"))),
        (Some(json), None) => Body::Json(JsonTemplate::parse(json, &format!("{at}.json")).map_err(invalid)?),
        (None, Some(form)) => Body::Form(
            form.iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        Template::parse(v, &format!("{at}.form.{k}")).map_err(invalid)?,
                    ))
                })
                .collect::<ProviderResult<_>>()?,
        ),
        (None, None) => Body::None,
    };
    for status in config.ok.iter().chain(&config.rejected) {
        if !(100..=599).contains(status) {
            return Err(invalid(format!("{at}: {status} is not an HTTP status")));
        }
    }
    if let Some(both) = config.ok.iter().find(|s| config.rejected.contains(s)) {
        return Err(invalid(format!("{at}: status {both} is in both `ok` and `rejected`")));
    }
    if name != StepName::Login && !config.rejected.is_empty() {
        return Err(invalid(format!(
            "{at}.rejected: only `login` has `rejected` (a refused management request is permission denied)"
        )));
    }
    if !matches!(name, StepName::Create | StepName::List) && !config.fields.is_empty() {
        return Err(invalid(format!("{at}.fields: only `create` and `list` have `fields`")));
    }
    if name != StepName::List && (config.items.is_some() || !config.mine.is_empty()) {
        return Err(invalid(format!("{at}: only `list` has `items` and `mine`")));
    }
    let items = config.items.clone().unwrap_or_default();
    if !(items.is_empty() || items.starts_with('/')) {
        return Err(invalid(format!(
            "{at}.items: `{items}` is not a JSON pointer (write `/data`)"
        )));
    }
    let mine = config
        .mine
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                Template::parse(v, &format!("{at}.mine.{k}")).map_err(invalid)?,
            ))
        })
        .collect::<ProviderResult<Vec<_>>>()?;
    let rejected = if name == StepName::Login && config.rejected.is_empty() {
        vec![401, 403]
    } else {
        config.rejected.clone()
    };
    if let Some(both) = config.ok.iter().find(|s| rejected.contains(s)) {
        return Err(invalid(format!(
            "{at}: status {both} is in `ok` and in the default `rejected` (401, 403); set `rejected`"
        )));
    }
    let mut fields = Vec::with_capacity(config.fields.len());
    for (field, pointer) in &config.fields {
        if !valid_field(field) || field == CREDENTIAL {
            return Err(invalid(format!(
                "{at}.fields: `{field}` is not a usable field name (letters, digits, `_`, `-`, `.`; not `credential`)"
            )));
        }
        if !(pointer.is_empty() || pointer.starts_with('/')) {
            return Err(invalid(format!(
                "{at}.fields.{field}: `{pointer}` is not a JSON pointer (write `/data/id`)"
            )));
        }
        fields.push((field.clone(), pointer.clone()));
    }
    Ok(Step {
        name,
        method,
        path,
        path_label,
        headers: headers(&config.headers, &format!("{at}.headers"))?,
        basic,
        body,
        ok: config.ok.clone(),
        rejected,
        fields,
        items,
        mine,
    })
}

impl Plan {
    /// Checks `config` for `strategy` and compiles it.
    pub(crate) fn compile(config: &HttpTargetConfig, strategy: Strategy) -> ProviderResult<Plan> {
        let url =
            reqwest::Url::parse(config.base_url.trim()).map_err(|e| invalid(format!("base_url is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(invalid("base_url must be an http:// or https:// URL with a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "base_url holds a user name or password: put the management credential in `headers` or `basic`",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "base_url must not have a query or fragment; put them in each step's `path`",
            ));
        }
        if url.scheme() == "http" && !is_loopback(&url) && !config.allow_plain_http {
            return Err(invalid(format!(
                "base_url {} is plain http to another machine: secrets would cross the network unencrypted; use \
                 https, or set `allow_plain_http = true`",
                shown_base(&config.base_url)
            )));
        }
        let base = url.as_str().trim_end_matches('/').to_owned();
        if !(1..=3600).contains(&config.timeout_secs) {
            return Err(invalid("timeout_secs must be between 1 and 3600"));
        }
        if config.retries > 10 {
            return Err(invalid("retries must be at most 10"));
        }
        if config.retry_max_wait_secs > 3600 {
            return Err(invalid("retry_max_wait_secs must be at most 3600"));
        }
        if config.revoke_settle_secs > 600 {
            return Err(invalid("revoke_settle_secs must be at most 600"));
        }
        let mut secret_fields = Vec::with_capacity(config.secret_fields.len() + 1);
        for f in &config.secret_fields {
            if !valid_field(f) || f == CREDENTIAL {
                return Err(invalid(format!("secret_fields: `{f}` is not a usable field name")));
            }
            if !secret_fields.contains(f) {
                secret_fields.push(f.clone());
            }
        }
        let primary = secret_fields.first().filter(|f| *f != PASSWORD).cloned();
        if !secret_fields.iter().any(|f| f == PASSWORD) {
            secret_fields.push(PASSWORD.to_owned());
        }
        let compile = |c: &Option<StepConfig>, name| c.as_ref().map(|c| step(c, name, &secret_fields)).transpose();
        let create = compile(&config.create, StepName::Create)?;
        let apply = compile(&config.apply, StepName::Apply)?;
        let revoke = compile(&config.revoke, StepName::Revoke)?;
        let preflight = compile(&config.preflight, StepName::Preflight)?;
        let list = compile(&config.list, StepName::List)?;
        let login = step(&config.login, StepName::Login, &secret_fields)?;

        match strategy {
            Strategy::Single => {
                if create.is_some() {
                    return Err(invalid(
                        "strategy \"single\" sets a password with `apply`; a service that mints keys (`create`) \
                         needs strategy \"dual\" (the old key must keep working until the new one is stored and \
                         verified)",
                    ));
                }
                if apply.is_none() {
                    return Err(invalid(
                        "strategy \"single\" needs an `apply` step that sets {{password}}",
                    ));
                }
            }
            Strategy::Dual => {
                if create.is_none() && apply.is_none() {
                    return Err(invalid(
                        "strategy \"dual\" needs a `create` step (the service mints the key) or an `apply` step",
                    ));
                }
                if revoke.is_none() {
                    return Err(invalid(
                        "strategy \"dual\" needs a `revoke` step that removes the old secret",
                    ));
                }
            }
            Strategy::Alternating => {
                return Err(ProviderError::unsupported(
                    "http target: strategy \"alternating\" is not implemented; use \"dual\" (create) or \"single\" \
                     (apply)",
                ))
            }
        }
        if let Some(create) = &create {
            if create.fields.is_empty() {
                return Err(invalid(
                    "create.fields must map the stored document's fields to JSON pointers into the answer, e.g. \
                     { api_key = \"/data/secret\", key_id = \"/data/id\" }",
                ));
            }
            // A service may take the key rekey generated (`{{password}}` in the request)
            // instead of minting one.
            let sends_password = create.placeholders().contains(&PASSWORD);
            if config.secret_fields.is_empty() && !sends_password {
                return Err(invalid(
                    "with `create`, `secret_fields` must name which of create.fields are secret (e.g. [\"api_key\"])",
                ));
            }
            if !sends_password && !create.fields.iter().any(|(f, _)| secret_fields.contains(f)) {
                return Err(invalid(
                    "create.fields maps none of `secret_fields`: the minted secret would not be stored",
                ));
            }
        }
        if let (Some(create), Some(revoke)) = (&create, &revoke) {
            // A revoke naming no field the answer provides would send, for the old key,
            // the very request it sends for the new one (the new document carries the
            // old one's other fields): rekey would refuse it after the new key is
            // stored, and every later run again, with the old key alive.
            let minted: Vec<&str> = create.fields.iter().map(|(f, _)| f.as_str()).collect();
            if !revoke.placeholders().iter().any(|f| minted.contains(f)) {
                return Err(invalid(format!(
                    "revoke uses none of create.fields ({}): its request for the old key would be the one for the new \
                     key too; name the minted key, e.g. path = \"/v1/keys/{{{{{}}}}}\" with that field in create.fields",
                    minted.join(", "),
                    minted.iter().find(|f| !secret_fields.iter().any(|s| s == *f)).unwrap_or(&minted[0])
                )));
            }
        }
        if let Some(list) = &list {
            let Some(create) = &create else {
                return Err(invalid(
                    "`list` finds minted keys that were never stored: it needs `create`",
                ));
            };
            if list.mine.is_empty() {
                return Err(invalid(
                    "list.mine must say which keys are this credential's, e.g. { name = \"rekey {{credential}}\" } \
                     matching create's json name (other keys of the account must never be swept)",
                ));
            }
            if list.fields.iter().any(|(f, _)| secret_fields.iter().any(|s| s == f)) {
                return Err(invalid("list.fields must not map a secret field (only ids and names)"));
            }
            if !list
                .fields
                .iter()
                .any(|(f, _)| create.fields.iter().any(|(c, _)| c == f))
            {
                return Err(invalid(
                    "list.fields must map an id that create.fields stores too (e.g. { key_id = \"/id\" }), to match \
                     listed keys with stored documents",
                ));
            }
            if let Some(m) = list.mine.iter().find(|(f, _)| !list.fields.iter().any(|(l, _)| l == f)) {
                return Err(invalid(format!("list.mine.{} must be one of list.fields", m.0)));
            }
        }
        // A login that does not use the document's secret proves nothing.
        if !login
            .placeholders()
            .iter()
            .any(|f| secret_fields.iter().any(|s| s == f))
        {
            return Err(invalid(format!(
                "login uses none of the secret fields ({}): it would succeed whatever the secret; send it, e.g. \
                 headers = {{ Authorization = \"Bearer {{{{{}}}}}\" }} or basic = {{ username = \"...\", password = \
                 \"{{{{password}}}}\" }}",
                secret_fields.join(", "),
                secret_fields[0]
            )));
        }
        let basic = match &config.basic {
            None => None,
            Some(b) => {
                if config.headers.keys().any(|k| k.eq_ignore_ascii_case("authorization")) {
                    return Err(invalid(
                        "give the management credential as `basic` or as an Authorization header, not both",
                    ));
                }
                Some((
                    Template::parse(&b.username, "basic.username").map_err(invalid)?,
                    Template::parse(&b.password, "basic.password").map_err(invalid)?,
                ))
            }
        };
        Ok(Plan {
            base,
            timeout: Duration::from_secs(config.timeout_secs),
            headers: headers(&config.headers, "headers")?,
            basic,
            secret_fields,
            primary,
            create,
            apply,
            login,
            revoke,
            preflight,
            list,
            settle: Duration::from_secs(config.revoke_settle_secs),
            retries: config.retries,
            max_wait: Duration::from_secs(config.retry_max_wait_secs),
        })
    }

    /// Whether `field` is secret.
    pub(crate) fn is_secret(&self, field: &str) -> bool {
        self.secret_fields.iter().any(|f| f == field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: serde_json::Value) -> HttpTargetConfig {
        serde_json::from_value(v).unwrap()
    }

    fn minting() -> serde_json::Value {
        json!({
            "base_url": "http://127.0.0.1:1/",
            "headers": {"Authorization": "Bearer admin"},
            "secret_fields": ["api_key"],
            "create": {"method": "POST", "path": "/v1/keys", "json": {"name": "rekey {{credential}}"}, "ok": [201],
                       "fields": {"api_key": "/data/secret", "key_id": "/data/id"}},
            "login": {"method": "GET", "path": "/v1/me", "headers": {"Authorization": "Bearer {{api_key}}"}, "ok": [200], "rejected": [401, 403]},
            "revoke": {"method": "DELETE", "path": "/v1/keys/{{key_id}}", "ok": [200, 204, 404]}
        })
    }

    fn err(v: serde_json::Value, strategy: Strategy) -> String {
        Plan::compile(&config(v), strategy).unwrap_err().to_string()
    }

    #[test]
    fn the_issue_example_compiles() {
        let plan = Plan::compile(&config(minting()), Strategy::Dual).unwrap();
        assert_eq!(plan.base, "http://127.0.0.1:1");
        assert_eq!(plan.primary.as_deref(), Some("api_key"));
        assert!(plan.is_secret("api_key") && plan.is_secret("password") && !plan.is_secret("key_id"));
        assert_eq!(plan.login.rejected, vec![401, 403]);
    }

    #[test]
    fn strategy_needs_its_steps() {
        assert!(err(minting(), Strategy::Single).contains("dual"));
        let mut v = minting();
        v.as_object_mut().unwrap().remove("revoke");
        assert!(err(v, Strategy::Dual).contains("revoke"));
        assert!(err(minting(), Strategy::Alternating).contains("alternating"));
        let mut v = minting();
        v.as_object_mut().unwrap().remove("secret_fields");
        assert!(err(v, Strategy::Dual).contains("secret_fields"));
    }

    #[test]
    fn secrets_in_paths_need_consent() {
        let mut v = minting();
        v["login"] = json!({"method": "GET", "path": "/v1/me?key={{api_key}}"});
        let e = err(v.clone(), Strategy::Dual);
        assert!(e.contains("path_secret") && e.contains("login.path"), "{e}");
        v["login"]["path_secret"] = json!(true);
        let plan = Plan::compile(&config(v), Strategy::Dual).unwrap();
        assert_eq!(plan.login.path_label, "/…");
    }

    #[test]
    fn login_must_use_the_secret() {
        let mut v = minting();
        v["login"] = json!({"method": "GET", "path": "/v1/me", "headers": {"Authorization": "Bearer {{key_id}}"}});
        assert!(err(v, Strategy::Dual).contains("login uses none of the secret fields"));
    }

    /// Found trying it: `create.fields` without `key_id` and a revoke of
    /// `/v1/keys/{{key_id}}` validated, then every rotation stored the new key with the
    /// old key's id and refused to revoke, leaving the old key alive.
    #[test]
    fn revoke_must_name_a_field_create_provides() {
        let mut v = minting();
        v["create"]["fields"] = json!({"api_key": "/data/secret"});
        let e = err(v.clone(), Strategy::Dual);
        assert!(e.contains("revoke uses none of create.fields (api_key)"), "{e}");
        v["revoke"]["headers"] = json!({"X-Key": "{{api_key}}"});
        Plan::compile(&config(v), Strategy::Dual).unwrap();
    }

    #[test]
    fn base_url_rules() {
        for (url, needle) in [
            ("ftp://h", "http"),
            ("https://u:p@h", "user name"),
            ("https://h/?token=x", "query"),
            ("http://api.example.com", "plain http"),
            ("not a url", "not a URL"),
        ] {
            let mut v = minting();
            v["base_url"] = json!(url);
            let e = err(v, Strategy::Dual);
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("u:p"), "{e}");
        }
        let mut v = minting();
        v["base_url"] = json!("http://api.example.com");
        v["allow_plain_http"] = json!(true);
        Plan::compile(&config(v), Strategy::Dual).unwrap();
    }

    #[test]
    fn list_rules() {
        let list = json!({"method": "GET", "path": "/v1/keys", "items": "/data",
                          "fields": {"key_id": "/id", "name": "/name"}, "mine": {"name": "rekey {{credential}}"}});
        let mut v = minting();
        v["list"] = list.clone();
        let plan = Plan::compile(&config(v.clone()), Strategy::Dual).unwrap();
        assert_eq!(plan.list.as_ref().unwrap().items, "/data");
        let mut bad = v.clone();
        bad["list"]["mine"] = json!({});
        assert!(err(bad, Strategy::Dual).contains("list.mine"));
        let mut bad = v.clone();
        bad["list"]["fields"] = json!({"api_key": "/secret", "key_id": "/id"});
        assert!(err(bad, Strategy::Dual).contains("secret"));
        let mut bad = v.clone();
        bad["list"]["fields"] = json!({"id": "/id", "name": "/name"});
        assert!(err(bad, Strategy::Dual).contains("create.fields stores too"));
        let mut bad = v.clone();
        bad["list"]["mine"] = json!({"label": "x"});
        assert!(err(bad, Strategy::Dual).contains("list.mine.label"));
        let mut bad = v;
        bad["revoke"]["items"] = json!("/data");
        assert!(err(bad, Strategy::Dual).contains("only `list`"));
    }

    #[test]
    fn step_rules() {
        let mut v = minting();
        v["revoke"]["rejected"] = json!([401]);
        assert!(err(v, Strategy::Dual).contains("only `login`"));
        let mut v = minting();
        v["login"]["ok"] = json!([200, 401]);
        assert!(err(v, Strategy::Dual).contains("both"));
        let mut v = minting();
        v["headers"] = json!({"Authorization": "Bearer s3cr3t\nX: y"});
        let e = err(v, Strategy::Dual);
        assert!(e.contains("headers.Authorization") && !e.contains("s3cr3t"), "{e}");
        let mut v = minting();
        v["create"]["method"] = json!("FETCH");
        assert!(err(v, Strategy::Dual).contains("FETCH"));
        let mut v = minting();
        v["create"]["fields"] = json!({"key_id": "/data/id"});
        assert!(err(v, Strategy::Dual).contains("none of `secret_fields`"));
        let mut v = minting();
        v["login"]["headers"]["Authorization"] = json!("Bearer {{api_key");
        assert!(err(v, Strategy::Dual).contains("closing"));
    }
}
