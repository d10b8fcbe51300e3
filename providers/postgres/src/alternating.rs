//! Strategy `alternating`: what makes two roles interchangeable, read from the
//! catalogs, and the differences between two such readings.
//!
//! Applications switch from one role to the other at every rotation, so any privilege
//! one role has and the other lacks breaks them half of the time. `preflight` reads a
//! [`RoleProfile`] of each role and refuses the pair when they differ:
//!
//! - role attributes (`pg_roles`): SUPERUSER, INHERIT, CREATEROLE, CREATEDB, LOGIN,
//!   REPLICATION, BYPASSRLS, CONNECTION LIMIT, VALID UNTIL;
//! - direct memberships (`pg_auth_members`), with their options;
//! - role settings (`ALTER ROLE … SET`, `pg_db_role_setting`) for every database and for
//!   the target database; only setting *names* are reported, never values;
//! - every object of the target database, and every shared object (databases,
//!   tablespaces), that names the role (`pg_shdepend`): ownership, each privilege
//!   granted to it directly (`aclexplode` of the object's ACL, column privileges
//!   included), row-level security policies;
//! - as a last check, the effective CONNECT, CREATE and TEMPORARY privileges on the
//!   target database (`has_database_privilege`).
//!
//! Together the first four determine what the roles may do, since privileges reach a
//! role only directly, through its memberships, or through PUBLIC (the same for both).
//! Catalogs are read directly rather than through `information_schema`, whose views
//! hide grants the reading role is not itself involved in.

use crate::sql::quote_ident;
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

/// At most this many differences are spelled out in one error.
const MAX_REPORTED: usize = 10;

/// What one role may do, as far as two alternating roles must agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoleProfile {
    /// Attribute name → its value in SQL spelling (`CREATEDB`, `NOCREATEDB`,
    /// `CONNECTION LIMIT 5`...), in a fixed order.
    pub(crate) attributes: Vec<(&'static str, String)>,
    /// Quoted group role → membership options (empty for the defaults).
    pub(crate) memberships: BTreeMap<String, String>,
    /// Role settings, keyed by `name=value (scope)`; printed without the value.
    pub(crate) settings: BTreeMap<String, Fact>,
    /// Facts about objects naming the role (`owns table public.t`), keyed by themselves.
    pub(crate) objects: BTreeMap<String, Fact>,
    /// Effective privileges on the target database (`CONNECT`, `CREATE`, `TEMPORARY`).
    pub(crate) database: BTreeSet<String>,
}

/// A fact one role may have and the other lack: how to say it of the one that has it,
/// and how to deny it of the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fact {
    pub(crate) shown: String,
    pub(crate) negation: &'static str,
}

impl Fact {
    pub(crate) fn new(shown: impl Into<String>, negation: &'static str) -> Fact {
        Fact {
            shown: shown.into(),
            negation,
        }
    }
}

/// A role's attributes.
const ATTRIBUTES_SQL: &str = "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, \
     rolreplication, rolbypassrls, rolconnlimit, \
     CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' THEN NULL \
     ELSE rolvaliduntil::text END \
     FROM pg_roles WHERE rolname = $1";

/// A role's direct memberships and their options. inherit_option and set_option exist
/// since PostgreSQL 16; to_jsonb reads them where they exist and yields NULL (the old
/// behaviour: true) before.
const MEMBERSHIPS_SQL: &str = "SELECT g.rolname::text, bool_or(m.admin_option), \
     bool_or(coalesce((to_jsonb(m) ->> 'inherit_option')::bool, true)), \
     bool_or(coalesce((to_jsonb(m) ->> 'set_option')::bool, true)) \
     FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
     WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1) \
     GROUP BY g.rolname";

/// A role's settings for every database and for database `$2`.
const SETTINGS_SQL: &str = "SELECT CASE WHEN s.setdatabase = 0 THEN NULL ELSE d.datname::text END, c.setting \
     FROM pg_db_role_setting s \
     LEFT JOIN pg_database d ON d.oid = s.setdatabase \
     CROSS JOIN LATERAL unnest(s.setconfig) AS c(setting) \
     WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = $1) \
     AND (s.setdatabase = 0 OR d.datname = $2)";

/// A role's effective privileges on database `$2`.
const DATABASE_SQL: &str = "SELECT has_database_privilege($1::name, $2::text, 'CONNECT'), \
     has_database_privilege($1::name, $2::text, 'CREATE'), \
     has_database_privilege($1::name, $2::text, 'TEMPORARY')";

/// Reads what shared catalogs say of `role`: attributes, memberships, settings and the
/// effective privileges on `dbname`. Works on a connection to any database.
pub(crate) async fn read_shared(
    client: &Client,
    role: &str,
    dbname: &str,
) -> Result<RoleProfile, tokio_postgres::Error> {
    let mut profile = RoleProfile::default();
    let by_role: &[(&(dyn ToSql + Sync), Type)] = &[(&role, Type::TEXT)];
    let by_role_and_db: &[(&(dyn ToSql + Sync), Type)] = &[(&role, Type::TEXT), (&dbname, Type::TEXT)];
    // Four independent reads, pipelined on the connection: one round trip in all.
    let (row, memberships, settings, database) = tokio::try_join!(
        client.query_typed_one(ATTRIBUTES_SQL, by_role),
        client.query_typed(MEMBERSHIPS_SQL, by_role),
        client.query_typed(SETTINGS_SQL, by_role_and_db),
        client.query_typed_one(DATABASE_SQL, by_role_and_db),
    )?;
    let flags = [
        ("SUPERUSER", "NOSUPERUSER"),
        ("INHERIT", "NOINHERIT"),
        ("CREATEROLE", "NOCREATEROLE"),
        ("CREATEDB", "NOCREATEDB"),
        ("LOGIN", "NOLOGIN"),
        ("REPLICATION", "NOREPLICATION"),
        ("BYPASSRLS", "NOBYPASSRLS"),
    ];
    for (i, (yes, no)) in flags.into_iter().enumerate() {
        let value = if row.get::<_, bool>(i) { yes } else { no };
        profile.attributes.push((yes, value.to_owned()));
    }
    let limit: i32 = row.get(7);
    profile.attributes.push((
        "CONNECTION LIMIT",
        if limit < 0 {
            "no CONNECTION LIMIT".to_owned()
        } else {
            format!("CONNECTION LIMIT {limit}")
        },
    ));
    let valid_until: Option<String> = row.get(8);
    profile.attributes.push((
        "VALID UNTIL",
        match valid_until {
            None => "no VALID UNTIL".to_owned(),
            Some(t) => format!("VALID UNTIL '{t}'"),
        },
    ));

    for row in memberships {
        let group: String = row.get(0);
        let mut options = Vec::new();
        if row.get::<_, bool>(1) {
            options.push("ADMIN OPTION");
        }
        if !row.get::<_, bool>(2) {
            options.push("INHERIT FALSE");
        }
        if !row.get::<_, bool>(3) {
            options.push("SET FALSE");
        }
        let options = if options.is_empty() {
            String::new()
        } else {
            format!("WITH {}", options.join(", "))
        };
        profile.memberships.insert(quote_ident(&group), options);
    }

    for row in settings {
        let database: Option<String> = row.get(0);
        let setting: String = row.get(1);
        let name = setting.split('=').next().unwrap_or_default();
        let scope = match &database {
            None => "in every database".to_owned(),
            Some(db) => format!("in database {}", quote_ident(db)),
        };
        profile.settings.insert(
            format!("{setting} ({scope})"),
            Fact::new(format!("sets {name} ({scope})"), "does not set it so"),
        );
    }

    for (i, privilege) in ["CONNECT", "CREATE", "TEMPORARY"].into_iter().enumerate() {
        if database.get::<_, bool>(i) {
            profile.database.insert(privilege.to_owned());
        }
    }
    Ok(profile)
}

/// The ACL column of the object a `pg_shdepend` row (`d`) points at, for the catalogs
/// that have one.
const ACL_OF_OBJECT: &str = "CASE d.classid \
    WHEN 'pg_class'::regclass THEN CASE WHEN d.objsubid = 0 \
        THEN (SELECT c.relacl FROM pg_class c WHERE c.oid = d.objid) \
        ELSE (SELECT a.attacl FROM pg_attribute a WHERE a.attrelid = d.objid AND a.attnum = d.objsubid) END \
    WHEN 'pg_namespace'::regclass THEN (SELECT n.nspacl FROM pg_namespace n WHERE n.oid = d.objid) \
    WHEN 'pg_proc'::regclass THEN (SELECT p.proacl FROM pg_proc p WHERE p.oid = d.objid) \
    WHEN 'pg_type'::regclass THEN (SELECT t.typacl FROM pg_type t WHERE t.oid = d.objid) \
    WHEN 'pg_language'::regclass THEN (SELECT l.lanacl FROM pg_language l WHERE l.oid = d.objid) \
    WHEN 'pg_foreign_data_wrapper'::regclass THEN (SELECT w.fdwacl FROM pg_foreign_data_wrapper w WHERE w.oid = d.objid) \
    WHEN 'pg_foreign_server'::regclass THEN (SELECT s.srvacl FROM pg_foreign_server s WHERE s.oid = d.objid) \
    WHEN 'pg_largeobject'::regclass THEN (SELECT m.lomacl FROM pg_largeobject_metadata m WHERE m.oid = d.objid) \
    WHEN 'pg_database'::regclass THEN (SELECT b.datacl FROM pg_database b WHERE b.oid = d.objid) \
    WHEN 'pg_tablespace'::regclass THEN (SELECT sp.spcacl FROM pg_tablespace sp WHERE sp.oid = d.objid) \
    WHEN 'pg_default_acl'::regclass THEN (SELECT da.defaclacl FROM pg_default_acl da WHERE da.oid = d.objid) \
    END";

/// Reads the objects of the connected database, and the shared objects, that name
/// `role` (owner, grantee, policy): must run on a connection to the target database.
pub(crate) async fn read_objects(client: &Client, role: &str) -> Result<BTreeMap<String, Fact>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT coalesce(o.type, 'object'), coalesce(o.identity, d.classid::regclass::text || ' ' || d.objid::text), \
         d.deptype::text, e.privilege_type, e.is_grantable \
         FROM pg_shdepend d \
         CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) AS o \
         LEFT JOIN LATERAL ( \
             SELECT x.privilege_type, x.is_grantable FROM aclexplode({ACL_OF_OBJECT}) AS x \
             WHERE x.grantee = d.refobjid \
         ) AS e ON d.deptype = 'a' \
         WHERE d.refclassid = 'pg_authid'::regclass \
         AND d.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1) \
         AND d.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))"
    );
    let rows = client.query_typed(&sql, &[(&role, Type::TEXT)]).await?;
    let mut facts = BTreeMap::new();
    for row in rows {
        let kind: String = row.get(0);
        let identity: String = row.get(1);
        let deptype: String = row.get(2);
        let privilege: Option<String> = row.get(3);
        let grantable: Option<bool> = row.get(4);
        let object = format!("{kind} {identity}");
        let (fact, negation) = match (deptype.as_str(), privilege) {
            ("o", _) => (format!("owns {object}"), "does not"),
            ("a", Some(privilege)) => {
                let grant = if grantable == Some(true) {
                    " WITH GRANT OPTION"
                } else {
                    ""
                };
                (format!("has {privilege}{grant} on {object}"), "does not")
            }
            // Named in the ACL as a grantor only.
            ("a", None) => (format!("granted privileges on {object}"), "did not"),
            ("r", _) => (format!("is named in {object}"), "is not"),
            _ => (format!("is referenced by {object}"), "is not"),
        };
        facts.insert(fact.clone(), Fact::new(fact, negation));
    }
    Ok(facts)
}

/// Every way in which `a` and `b` differ, one phrase each, naming both roles.
pub(crate) fn differences(a_name: &str, a: &RoleProfile, b_name: &str, b: &RoleProfile) -> Vec<String> {
    let (qa, qb) = (quote_ident(a_name), quote_ident(b_name));
    let mut out = Vec::new();
    for ((attribute, va), (_, vb)) in a.attributes.iter().zip(&b.attributes) {
        if va != vb {
            out.push(format!("{qa} has {va}, {qb} has {vb} ({attribute})"));
        }
    }
    for (group, options) in &a.memberships {
        match b.memberships.get(group) {
            None => out.push(format!("{qa} is a member of {group}, {qb} is not")),
            Some(other) if other != options => out.push(format!(
                "{qa} is a member of {group} {}, {qb} {}",
                or_defaults(options),
                or_defaults(other)
            )),
            Some(_) => {}
        }
    }
    for group in b.memberships.keys().filter(|g| !a.memberships.contains_key(*g)) {
        out.push(format!("{qb} is a member of {group}, {qa} is not"));
    }
    one_sided(&mut out, &qa, &a.settings, &qb, &b.settings);
    one_sided(&mut out, &qa, &a.objects, &qb, &b.objects);
    if out.is_empty() {
        // Effective database privileges follow from the facts above; report them only
        // if those missed something.
        for privilege in a.database.symmetric_difference(&b.database) {
            let (has, lacks) = if a.database.contains(privilege) {
                (&qa, &qb)
            } else {
                (&qb, &qa)
            };
            out.push(format!(
                "{has} has {privilege} on the target database, {lacks} does not"
            ));
        }
    }
    out
}

fn or_defaults(options: &str) -> &str {
    if options.is_empty() {
        "with default options"
    } else {
        options
    }
}

/// Adds a phrase for every fact present on one side only.
fn one_sided(out: &mut Vec<String>, qa: &str, a: &BTreeMap<String, Fact>, qb: &str, b: &BTreeMap<String, Fact>) {
    for (has, mine, lacks, theirs) in [(qa, a, qb, b), (qb, b, qa, a)] {
        for (key, fact) in mine {
            if !theirs.contains_key(key) {
                out.push(format!("{has} {}, {lacks} {}", fact.shown, fact.negation));
            }
        }
    }
}

/// The error message for two roles that differ.
pub(crate) fn describe_differences(a_name: &str, b_name: &str, differences: &[String]) -> String {
    let mut text = format!("roles {} and {} differ: ", quote_ident(a_name), quote_ident(b_name));
    let shown: Vec<&str> = differences.iter().take(MAX_REPORTED).map(String::as_str).collect();
    text.push_str(&shown.join("; "));
    if differences.len() > MAX_REPORTED {
        text.push_str(&format!("; and {} more", differences.len() - MAX_REPORTED));
    }
    text.push_str(
        " (alternating roles take turns serving the application, so they must have identical \
         attributes, memberships, settings and privileges: grant them through one group role)",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> RoleProfile {
        RoleProfile {
            attributes: vec![
                ("CREATEDB", "NOCREATEDB".into()),
                ("CONNECTION LIMIT", "no CONNECTION LIMIT".into()),
            ],
            memberships: [("\"orders_rw\"".to_owned(), String::new())].into(),
            settings: BTreeMap::new(),
            objects: BTreeMap::new(),
            database: ["CONNECT".to_owned()].into(),
        }
    }

    #[test]
    fn identical_profiles_do_not_differ() {
        assert!(differences("a", &profile(), "b", &profile()).is_empty());
    }

    #[test]
    fn each_kind_of_difference_is_named() {
        let a = profile();
        let mut b = profile();
        b.attributes[0].1 = "CREATEDB".into();
        b.memberships.clear();
        b.memberships.insert("\"audit\"".into(), "WITH ADMIN OPTION".into());
        b.settings.insert(
            "search_path=x (in every database)".into(),
            Fact::new("sets search_path (in every database)", "does not set it so"),
        );
        b.objects.insert(
            "has SELECT on table public.t".into(),
            Fact::new("has SELECT on table public.t", "does not"),
        );
        let found = differences("a", &a, "b", &b);
        let text = found.join("\n");
        assert!(
            text.contains("\"a\" has NOCREATEDB, \"b\" has CREATEDB (CREATEDB)"),
            "{text}"
        );
        assert!(
            text.contains("\"a\" is a member of \"orders_rw\", \"b\" is not"),
            "{text}"
        );
        assert!(text.contains("\"b\" is a member of \"audit\", \"a\" is not"), "{text}");
        assert!(
            text.contains("\"b\" sets search_path (in every database), \"a\" does not set it so"),
            "{text}"
        );
        assert!(!text.contains("search_path=x"), "setting values are not shown: {text}");
        assert!(
            text.contains("\"b\" has SELECT on table public.t, \"a\" does not"),
            "{text}"
        );
        assert_eq!(found.len(), 5, "{text}");
    }

    #[test]
    fn membership_options_and_database_fallback() {
        let a = profile();
        let mut b = profile();
        b.memberships.insert("\"orders_rw\"".into(), "WITH ADMIN OPTION".into());
        let found = differences("a", &a, "b", &b);
        assert_eq!(
            found,
            ["\"a\" is a member of \"orders_rw\" with default options, \"b\" WITH ADMIN OPTION"]
        );
        let mut b = profile();
        b.database.insert("CREATE".into());
        assert_eq!(
            differences("a", &a, "b", &b),
            ["\"b\" has CREATE on the target database, \"a\" does not"]
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let many: Vec<String> = (0..13).map(|i| format!("d{i}")).collect();
        let text = describe_differences("a", "b", &many);
        assert!(text.starts_with("roles \"a\" and \"b\" differ: d0; d1"), "{text}");
        assert!(text.contains("d9; and 3 more"), "{text}");
        assert!(!text.contains("d10"), "{text}");
    }
}
