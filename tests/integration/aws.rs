//! AWS through the CLI against moto's server with signatures enforced: an IAM user's
//! access key rotated, its secret kept in Secrets Manager in AWS's own JSON shape and
//! labels. Setup and checks use boto3 (installed with moto) as an independent client.

use crate::util::{run, unique, Run};
use rekey_testbed::MotoServer;
use std::process::{Command, Stdio};

/// Runs a boto3 snippet against the server as its administrator; returns stdout.
fn boto3(moto: &MotoServer, script: &str) -> String {
    let (id, secret) = moto.admin_key();
    let prelude = format!(
        "import boto3, json, sys\n\
         def client(service):\n    return boto3.client(service, endpoint_url='{}', region_name='{}')\n",
        moto.endpoint(),
        moto.region()
    );
    let out = Command::new("python3")
        .args(["-c", &format!("{prelude}{script}")])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_PROFILE")
        .stderr(Stdio::piped())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn rekey(moto: &MotoServer, dir: &std::path::Path, args: &[&str], stdin: &str) -> Run {
    let (id, secret) = moto.admin_key();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.current_dir(dir)
        .env_remove("REKEY_CONFIG")
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .arg("-c")
        .arg(dir.join("rekey.toml"))
        .args(args);
    run(cmd, stdin)
}

#[test]
fn iam_key_rotation_with_the_secrets_manager_store() {
    let moto = MotoServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let user = unique("deployer");
    let secret_id = format!("ci/{}", unique("aws"));
    let created = boto3(
        moto,
        &format!(
            "iam = client('iam')\niam.create_user(UserName='{user}')\n\
             k = iam.create_access_key(UserName='{user}')['AccessKey']\n\
             print(json.dumps({{'username': '{user}', 'access_key_id': k['AccessKeyId'], 'secret_access_key': k['SecretAccessKey']}}))"
        ),
    );
    let first: serde_json::Value = serde_json::from_str(&created).unwrap();
    let old_key = first["access_key_id"].as_str().unwrap().to_owned();
    let old_secret = first["secret_access_key"].as_str().unwrap().to_owned();
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.aws]\ntype = \"aws-secretsmanager\"\nregion = \"{region}\"\n\
             endpoint_url = \"{endpoint}\"\n[[credentials]]\nname = \"deployer-key\"\nstore = \"aws\"\nkey = \"{secret_id}\"\n\
             strategy = \"dual\"\ngrace = \"0s\"\ntarget = {{ type = \"aws-iam\", user = \"{user}\", region = \"{region}\", endpoint_url = \"{endpoint}\" }}\n",
            region = moto.region(),
            endpoint = moto.endpoint()
        ),
    )
    .unwrap();

    rekey(moto, dir.path(), &["import", "deployer-key"], &created).assert_code(0);
    let plan = rekey(moto, dir.path(), &["plan"], "");
    plan.assert_code(0);
    assert!(plan.stdout.contains("has 1 access key(s)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("stored as current"), "{}", plan.stdout);
    let r = rekey(moto, dir.path(), &["rotate", "deployer-key"], "");
    r.assert_code(0);
    assert!(!r.stdout.contains(&old_secret) && !r.stderr.contains(&old_secret));

    // An independent client sees the new key as AWSCURRENT, in the rotation JSON shape,
    // the old one as AWSPREVIOUS, and IAM holds only the new key. (The stage is named
    // explicitly: moto answers a GetSecretValue without one from the version it last
    // *wrote* as current, ignoring UpdateSecretVersionStage; AWS answers AWSCURRENT.)
    let seen = boto3(
        moto,
        &format!(
            "sm = client('secretsmanager')\ncur = json.loads(sm.get_secret_value(SecretId='{secret_id}', VersionStage='AWSCURRENT')['SecretString'])\n\
             prev = json.loads(sm.get_secret_value(SecretId='{secret_id}', VersionStage='AWSPREVIOUS')['SecretString'])\n\
             keys = [k['AccessKeyId'] for k in client('iam').list_access_keys(UserName='{user}')['AccessKeyMetadata']]\n\
             print(json.dumps({{'current': cur, 'previous_key': prev['access_key_id'], 'iam_keys': keys}}))"
        ),
    );
    let seen: serde_json::Value = serde_json::from_str(&seen).unwrap();
    let new_key = seen["current"]["access_key_id"].as_str().unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(seen["current"]["engine"], "aws-iam");
    assert_eq!(seen["current"]["username"], user.as_str());
    assert!(seen["current"]["secret_access_key"].is_string());
    assert_eq!(seen["previous_key"], old_key.as_str());
    assert_eq!(
        seen["iam_keys"],
        serde_json::json!([new_key]),
        "the old key was deleted"
    );

    rekey(moto, dir.path(), &["verify"], "").assert_code(0);
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(!audit.contains(&old_secret) && !audit.contains(seen["current"]["secret_access_key"].as_str().unwrap()));
}

#[test]
fn a_minted_key_that_cannot_be_stored_is_deleted_again() {
    let moto = MotoServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let user = unique("orphan");
    let created = boto3(
        moto,
        &format!(
            "iam = client('iam')\niam.create_user(UserName='{user}')\n\
             k = iam.create_access_key(UserName='{user}')['AccessKey']\n\
             print(json.dumps({{'username': '{user}', 'access_key_id': k['AccessKeyId'], 'secret_access_key': k['SecretAccessKey']}}))"
        ),
    );
    let old_key = serde_json::from_str::<serde_json::Value>(&created).unwrap()["access_key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n[[credentials]]\nname = \"k\"\nstore = \"local\"\nkey = \"k\"\n\
             strategy = \"dual\"\ntarget = {{ type = \"aws-iam\", user = \"{user}\", region = \"{}\", endpoint_url = \"{}\" }}\n",
            moto.region(),
            moto.endpoint()
        ),
    )
    .unwrap();
    rekey(moto, dir.path(), &["import", "k"], &created).assert_code(0);
    let before = std::fs::read(dir.path().join("secrets.json")).unwrap();
    let (id, secret) = moto.admin_key();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.current_dir(dir.path())
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("REKEY_FAILPOINT", "fail-stage")
        .args(["-c", dir.path().join("rekey.toml").to_str().unwrap(), "rotate"]);
    let r = run(cmd, "");
    r.assert_code(1);
    r.assert_one_error(&["k: stage:", "removed again"]);
    let keys = boto3(
        moto,
        &format!("print(json.dumps([k['AccessKeyId'] for k in client('iam').list_access_keys(UserName='{user}')['AccessKeyMetadata']]))"),
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&keys).unwrap(),
        serde_json::json!([old_key]),
        "no orphaned key"
    );
    assert_eq!(
        std::fs::read(dir.path().join("secrets.json")).unwrap(),
        before,
        "the store is unchanged"
    );
}

#[test]
fn a_second_inactive_key_needs_delete_inactive() {
    let moto = MotoServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let user = unique("twokeys");
    let created = boto3(
        moto,
        &format!(
            "iam = client('iam')\niam.create_user(UserName='{user}')\n\
             k = iam.create_access_key(UserName='{user}')['AccessKey']\n\
             extra = iam.create_access_key(UserName='{user}')['AccessKey']['AccessKeyId']\n\
             iam.update_access_key(UserName='{user}', AccessKeyId=extra, Status='Inactive')\n\
             print(json.dumps({{'username': '{user}', 'access_key_id': k['AccessKeyId'], 'secret_access_key': k['SecretAccessKey']}}))"
        ),
    );
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n[[credentials]]\nname = \"k\"\nstore = \"local\"\nkey = \"k\"\n\
             strategy = \"dual\"\ngrace = \"0s\"\ntarget = {{ type = \"aws-iam\", user = \"{user}\", region = \"{}\", endpoint_url = \"{}\" }}\n",
            moto.region(),
            moto.endpoint()
        ),
    )
    .unwrap();
    rekey(moto, dir.path(), &["import", "k"], &created).assert_code(0);
    let plan = rekey(moto, dir.path(), &["plan"], "");
    plan.assert_code(1);
    plan.assert_one_error(&["k: preflight:", "already has two access keys"]);
    let before = std::fs::read(dir.path().join("secrets.json")).unwrap();
    let refused = rekey(moto, dir.path(), &["rotate"], "");
    refused.assert_code(1);
    refused.assert_one_error(&["k:", "already has two access keys", "--delete-inactive"]);
    assert_eq!(
        std::fs::read(dir.path().join("secrets.json")).unwrap(),
        before,
        "nothing changed"
    );
    rekey(moto, dir.path(), &["rotate", "--delete-inactive"], "").assert_code(0);
    let keys = boto3(
        moto,
        &format!("print(len(client('iam').list_access_keys(UserName='{user}')['AccessKeyMetadata']))"),
    );
    assert_eq!(
        keys, "1",
        "the inactive extra and the old key are gone, the new one stays"
    );
    rekey(moto, dir.path(), &["verify"], "").assert_code(0);
}

/// An IAM user with one access key, a `rekey.toml` whose credential `key` keeps it in
/// Secrets Manager (the store's endpoint is `store_endpoint`: moto itself or a counting
/// proxy in front of it), and the key imported. Returns (user, secret id).
fn imported_iam_credential(moto: &MotoServer, dir: &std::path::Path, store_endpoint: &str) -> (String, String) {
    let user = unique("sm");
    let secret_id = format!("ci/{}", unique("sm"));
    let created = boto3(
        moto,
        &format!(
            "iam = client('iam')\niam.create_user(UserName='{user}')\n\
             k = iam.create_access_key(UserName='{user}')['AccessKey']\n\
             print(json.dumps({{'username': '{user}', 'access_key_id': k['AccessKeyId'], 'secret_access_key': k['SecretAccessKey']}}))"
        ),
    );
    std::fs::write(
        dir.join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.aws]\ntype = \"aws-secretsmanager\"\nregion = \"{region}\"\n\
             endpoint_url = \"{store_endpoint}\"\n[[credentials]]\nname = \"key\"\nstore = \"aws\"\nkey = \"{secret_id}\"\n\
             strategy = \"dual\"\ngrace = \"0s\"\ntarget = {{ type = \"aws-iam\", user = \"{user}\", region = \"{region}\", endpoint_url = \"{endpoint}\" }}\n",
            region = moto.region(),
            endpoint = moto.endpoint()
        ),
    )
    .unwrap();
    rekey(moto, dir, &["import", "key"], &created).assert_code(0);
    (user, secret_id)
}

/// The `VersionId` and `access_key_id` of the version holding `stage`.
fn version_at(moto: &MotoServer, secret_id: &str, stage: &str) -> (String, String) {
    let out = boto3(
        moto,
        &format!(
            "v = client('secretsmanager').get_secret_value(SecretId='{secret_id}', VersionStage='{stage}')\n\
             try:\n    k = json.loads(v['SecretString']).get('access_key_id', '')\n\
             except ValueError:\n    k = ''\n\
             print(v['VersionId'] + ' ' + k)"
        ),
    );
    let (id, key) = out.split_once(' ').unwrap_or((out.as_str(), ""));
    (id.to_owned(), key.to_owned())
}

#[test]
fn a_pending_version_that_is_not_json_is_reported_by_every_command_and_abandoned() {
    let moto = MotoServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let (_, secret_id) = imported_iam_credential(moto, dir.path(), &moto.endpoint());
    let (current, _) = version_at(moto, &secret_id, "AWSCURRENT");
    // Something else left a rotation: AWSPENDING on a version whose value is not JSON.
    let foreign = boto3(
        moto,
        &format!(
            "print(client('secretsmanager').put_secret_value(SecretId='{secret_id}', SecretString='not json at all', \
             VersionStages=['AWSPENDING'])['VersionId'])"
        ),
    );
    assert_ne!(version_at(moto, &secret_id, "AWSPENDING").0, current, "precondition");
    for args in [&["status"][..], &["plan"], &["rotate", "key"], &["verify"]] {
        let r = rekey(moto, dir.path(), args, "");
        assert_ne!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        for part in [secret_id.as_str(), foreign.as_str(), "AWSPENDING", "--abandon-pending"] {
            assert!(all.contains(part), "{args:?} does not say {part}: {all}");
        }
        assert!(!all.contains("not json at all"), "{all}");
    }
    assert_eq!(version_at(moto, &secret_id, "AWSCURRENT").0, current, "nothing changed");

    let r = rekey(moto, dir.path(), &["rotate", "key", "--abandon-pending"], "");
    r.assert_code(0);
    let (now, new_key) = version_at(moto, &secret_id, "AWSCURRENT");
    assert_ne!(now, current, "rotated");
    assert_ne!(now, foreign);
    assert!(!new_key.is_empty(), "the new current is a JSON document with a key");
    let labels = boto3(
        moto,
        &format!(
            "print(json.dumps(client('secretsmanager').describe_secret(SecretId='{secret_id}')['VersionIdsToStages'].get('{foreign}', [])))"
        ),
    );
    assert!(
        !labels.contains("AWSPENDING"),
        "the foreign version is no longer pending: {labels}"
    );
    rekey(moto, dir.path(), &["verify"], "").assert_code(0);
    rekey(moto, dir.path(), &["status"], "").assert_code(0);
}

/// Issue 12: a leftover AWSPENDING holding another IAM user's key (a document copied
/// from another secret) logs in fine, so only the target's own check (whose key is it?)
/// tells it apart. `plan` warns and `rotate` fails, both naming `--abandon-pending`,
/// with nothing changed; `rotate --abandon-pending` drops it without touching the other
/// user's key.
#[test]
fn a_pending_version_of_another_iam_user_is_reported_and_abandoned() {
    let moto = MotoServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let (_, secret_id) = imported_iam_credential(moto, dir.path(), &moto.endpoint());
    let (current, current_key) = version_at(moto, &secret_id, "AWSCURRENT");
    let other = unique("other");
    let foreign = boto3(
        moto,
        &format!(
            "iam = client('iam')\niam.create_user(UserName='{other}')\n\
             k = iam.create_access_key(UserName='{other}')['AccessKey']\n\
             doc = json.dumps({{'username': '{other}', 'access_key_id': k['AccessKeyId'], \
             'secret_access_key': k['SecretAccessKey']}})\n\
             print(client('secretsmanager').put_secret_value(SecretId='{secret_id}', SecretString=doc, \
             VersionStages=['AWSPENDING'])['VersionId'])"
        ),
    );
    let (pending, other_key) = version_at(moto, &secret_id, "AWSPENDING");
    assert_eq!(pending, foreign, "precondition: the other user's key is pending");
    let other_keys = || {
        boto3(
            moto,
            &format!(
                "print(' '.join(k['AccessKeyId'] + ':' + k['Status'] for k in \
                 client('iam').list_access_keys(UserName='{other}')['AccessKeyMetadata']))"
            ),
        )
    };
    assert_eq!(other_keys(), format!("{other_key}:Active"), "precondition");

    let plan = rekey(moto, dir.path(), &["plan", "key"], "");
    let all = format!("{}{}", plan.stdout, plan.stderr);
    for part in [foreign.as_str(), "--abandon-pending", other.as_str()] {
        assert!(all.contains(part), "plan does not say {part}: {all}");
    }
    let r = rekey(moto, dir.path(), &["rotate", "key"], "");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    for part in [foreign.as_str(), "--abandon-pending", other.as_str()] {
        assert!(all.contains(part), "rotate does not say {part}: {all}");
    }
    assert_eq!(
        version_at(moto, &secret_id, "AWSCURRENT"),
        (current.clone(), current_key.clone()),
        "nothing changed"
    );
    assert_eq!(version_at(moto, &secret_id, "AWSPENDING").0, foreign, "nothing changed");

    rekey(moto, dir.path(), &["rotate", "key", "--abandon-pending"], "").assert_code(0);
    let (now, new_key) = version_at(moto, &secret_id, "AWSCURRENT");
    assert_ne!(now, current, "rotated");
    assert_ne!(now, foreign);
    assert!(
        !new_key.is_empty() && new_key != current_key && new_key != other_key,
        "{new_key}"
    );
    assert_eq!(
        other_keys(),
        format!("{other_key}:Active"),
        "the other user's key is untouched"
    );
    rekey(moto, dir.path(), &["verify"], "").assert_code(0);
}

#[test]
fn an_application_label_on_the_current_version_follows_it() {
    let moto = MotoServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let (_, secret_id) = imported_iam_credential(moto, dir.path(), &moto.endpoint());
    let (current, old_key) = version_at(moto, &secret_id, "AWSCURRENT");
    boto3(
        moto,
        &format!(
            "client('secretsmanager').update_secret_version_stage(SecretId='{secret_id}', VersionStage='MYAPP_LIVE', \
             MoveToVersionId='{current}')"
        ),
    );
    assert_eq!(
        version_at(moto, &secret_id, "MYAPP_LIVE"),
        (current.clone(), old_key.clone()),
        "precondition"
    );
    let plan = rekey(moto, dir.path(), &["plan"], "");
    plan.assert_code(0);
    assert!(
        plan.stdout.contains("MYAPP_LIVE") && plan.stdout.contains("follows AWSCURRENT"),
        "{}",
        plan.stdout
    );
    rekey(moto, dir.path(), &["rotate", "key"], "").assert_code(0);
    let (now, new_key) = version_at(moto, &secret_id, "AWSCURRENT");
    assert_ne!(now, current);
    assert_eq!(
        version_at(moto, &secret_id, "MYAPP_LIVE"),
        (now, new_key.clone()),
        "the label names the new current, not the revoked key"
    );
    assert_ne!(new_key, old_key);
    rekey(moto, dir.path(), &["verify"], "").assert_code(0);
}

#[test]
fn secrets_manager_calls_of_a_rotation_through_the_cli() {
    let moto = MotoServer::shared();
    let proxy = rekey_testbed::CountingProxy::start(moto.port()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    imported_iam_credential(moto, dir.path(), &proxy.endpoint());
    let ops = |calls: Vec<String>| -> Vec<String> {
        calls
            .into_iter()
            .map(|c| c.trim_start_matches("secretsmanager.").to_owned())
            .collect()
    };
    let six = [
        "DescribeSecret",
        "GetSecretValue",
        "PutSecretValue",
        "UpdateSecretVersionStage",
        "UpdateSecretVersionStage",
        "TagResource",
    ];
    proxy.take();
    rekey(moto, dir.path(), &["rotate", "key"], "").assert_code(0);
    assert_eq!(ops(proxy.take()), six, "first rotation: no previous version yet");
    rekey(moto, dir.path(), &["rotate", "key"], "").assert_code(0);
    assert_eq!(
        ops(proxy.take()),
        six,
        "later rotations: the previous version is recorded revoked, its value is not read"
    );
    rekey(moto, dir.path(), &["verify"], "").assert_code(0);
}

/// `--shard K/N` against one Secrets Manager store: three processes, separate lock
/// directories (as on three machines), the store's compare-and-set the only
/// coordination. Every credential is rotated exactly once and none is broken.
#[test]
fn three_shards_rotate_every_credential_of_one_secrets_manager_exactly_once() {
    let moto = MotoServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<String> = (0..6).map(|i| unique(&format!("shard{i}"))).collect();
    let created = boto3(
        moto,
        &format!(
            "iam = client('iam')\nout = []\nfor u in {users:?}:\n    iam.create_user(UserName=u)\n    \
             k = iam.create_access_key(UserName=u)['AccessKey']\n    \
             out.append({{'username': u, 'access_key_id': k['AccessKeyId'], 'secret_access_key': k['SecretAccessKey']}})\n\
             print(json.dumps(out))"
        ),
    );
    let created: Vec<serde_json::Value> = serde_json::from_str(&created).unwrap();
    let prefix = unique("shards");
    let credentials: String = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            format!(
                "[[credentials]]\nname = \"svc-{i}\"\nstore = \"aws\"\nkey = \"{prefix}/{i}\"\nstrategy = \"dual\"\n\
                 grace = \"0s\"\ntarget = {{ type = \"aws-iam\", user = \"{user}\", region = \"{region}\", \
                 endpoint_url = \"{endpoint}\" }}\n",
                region = moto.region(),
                endpoint = moto.endpoint()
            )
        })
        .collect();
    let base = format!(
        "[stores.aws]\ntype = \"aws-secretsmanager\"\nregion = \"{}\"\nendpoint_url = \"{}\"\n{credentials}",
        moto.region(),
        moto.endpoint()
    );
    std::fs::write(dir.path().join("rekey.toml"), &base).unwrap();
    for (i, doc) in created.iter().enumerate() {
        rekey(moto, dir.path(), &["import", &format!("svc-{i}")], &doc.to_string()).assert_code(0);
    }
    let (id, secret) = moto.admin_key();
    let mut children = Vec::new();
    for k in 1..=3 {
        let config = dir.path().join(format!("shard{k}.toml"));
        std::fs::write(
            &config,
            format!("[defaults]\nlock_dir = \"locks-{k}\"\naudit_log = \"audit-{k}.jsonl\"\n{base}"),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(dir.path())
            .env_remove("REKEY_CONFIG")
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .args([
                "-c",
                config.to_str().unwrap(),
                "-o",
                "json",
                "rotate",
                "--shard",
                &format!("{k}/3"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    let rotated = crate::util::rotated_by_shards(children);
    let all: Vec<String> = (0..6).map(|i| format!("svc-{i}")).collect();
    assert_eq!(rotated, all, "every credential exactly once across the shards");
    for (i, doc) in created.iter().enumerate() {
        let (_, key) = version_at(moto, &format!("{prefix}/{i}"), "AWSCURRENT");
        assert_ne!(key, doc["access_key_id"].as_str().unwrap(), "svc-{i} has a new key");
        let keys = boto3(
            moto,
            &format!(
                "print(json.dumps([k['AccessKeyId'] for k in client('iam').list_access_keys(UserName='{}')['AccessKeyMetadata']]))",
                users[i]
            ),
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&keys).unwrap(),
            serde_json::json!([key]),
            "svc-{i}: IAM holds exactly the stored current key (the old one is gone, nothing orphaned)"
        );
    }
    rekey(moto, dir.path(), &["verify"], "").assert_code(0);
}

/// Without `--shard`, three processes with separate lock directories (three machines)
/// rotate the same PostgreSQL credentials kept in one Secrets Manager at once: the
/// store's compare-and-set lets one runner stage each credential at a time; the others
/// report it busy (exit 3), or find its version pending and finish it. Never two
/// different secrets applied at once: every stored current password logs in and every
/// original one is refused.
#[test]
fn runners_racing_on_one_secrets_manager_never_break_a_credential() {
    let moto = MotoServer::shared();
    let mut ws = crate::util::Workspace::new();
    let prefix = unique("race");
    let mut roles = Vec::new();
    let mut credentials = String::new();
    for i in 0..6 {
        let (role, password) = ws.role(&format!("rk_race{i}"));
        credentials.push_str(
            &ws.credential(&format!("svc-{i}"), &role)
                .replace("store = \"local\"", "store = \"aws\"")
                .replace(&format!("key = \"app/svc-{i}\""), &format!("key = \"{prefix}/{i}\"")),
        );
        roles.push((format!("svc-{i}"), role, password));
    }
    let base = format!(
        "[stores.aws]\ntype = \"aws-secretsmanager\"\nregion = \"{}\"\nendpoint_url = \"{}\"\n{credentials}",
        moto.region(),
        moto.endpoint()
    );
    let (id, secret) = moto.admin_key();
    let command = |config: &str, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(ws.dir.path())
            .env_remove("REKEY_CONFIG")
            .env_remove("REKEY_FAILPOINT")
            .env("NO_COLOR", "1")
            .env(crate::util::ADMIN_ENV, ws.pg.admin_url())
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["-c", config])
            .args(args);
        cmd
    };
    ws.write_raw_config(&format!("[defaults]\naudit_log = \"audit.jsonl\"\n{base}"));
    let main_config = ws.config_path().to_str().unwrap().to_owned();
    for (name, _, password) in &roles {
        run(command(&main_config, &["import", name]), password).assert_code(0);
    }
    let mut children = Vec::new();
    for k in 1..=3 {
        let config = ws.path(&format!("runner{k}.toml"));
        std::fs::write(
            &config,
            format!("[defaults]\nlock_dir = \"locks-{k}\"\naudit_log = \"audit-{k}.jsonl\"\n{base}"),
        )
        .unwrap();
        let mut cmd = command(config.to_str().unwrap(), &["-o", "json", "rotate"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    let mut rotated = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            matches!(out.status.code(), Some(0) | Some(3)),
            "exit {:?}: {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        rotated += doc["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "rotated")
            .count();
    }
    assert!(rotated >= 6, "every credential was rotated at least once: {rotated}");
    for (i, (name, role, old)) in roles.iter().enumerate() {
        let current = boto3(
            moto,
            &format!(
                "print(json.loads(client('secretsmanager').get_secret_value(SecretId='{prefix}/{i}', \
                 VersionStage='AWSCURRENT')['SecretString'])['password'])"
            ),
        );
        assert!(
            ws.can_login(role, &current),
            "{name}: the stored current password works"
        );
        assert!(!ws.can_login(role, old), "{name}: the original password is dead");
    }
    run(command(&main_config, &["verify"]), "").assert_code(0);
}

/// A Secrets Manager principal that may read and write versions but not move labels
/// (no `secretsmanager:UpdateSecretVersionStage`), rotating a `single` PostgreSQL
/// credential, where apply kills the old password. The label move that takes
/// `AWSPENDING` (the compare-and-set, call 5) comes before apply, so the rotation fails
/// at `stage` with the permission named, the role's password is untouched, the
/// secret's `AWSCURRENT` is the same version, and a principal with the permission then
/// rotates it.
#[test]
fn a_store_principal_that_may_not_move_labels_fails_before_the_target_is_touched() {
    let moto = MotoServer::shared();
    let mut ws = crate::util::Workspace::new();
    let (role, password) = ws.role("rk_sm_nolabel");
    let limited = unique("sm-limited");
    let secret_id = format!("ci/{}", unique("nolabel"));
    let key = boto3(
        moto,
        &format!(
            "iam = client('iam')\niam.create_user(UserName='{limited}')\n\
             iam.put_user_policy(UserName='{limited}', PolicyName='sm', PolicyDocument=json.dumps({{'Version': '2012-10-17', \
             'Statement': [{{'Effect': 'Allow', 'Action': ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue', \
             'secretsmanager:PutSecretValue', 'secretsmanager:CreateSecret', 'secretsmanager:ListSecretVersionIds', \
             'secretsmanager:TagResource', 'secretsmanager:UntagResource'], 'Resource': '*'}}]}}))\n\
             k = iam.create_access_key(UserName='{limited}')['AccessKey']\n\
             print(k['AccessKeyId'] + ' ' + k['SecretAccessKey'])"
        ),
    );
    let (limited_id, limited_secret) = key.split_once(' ').expect("an access key");
    let (admin_id, admin_secret) = moto.admin_key();
    // Two profiles in a credentials file of the test's own: the store names one.
    std::fs::write(
        ws.path("aws-credentials"),
        format!(
            "[admin]\naws_access_key_id = {admin_id}\naws_secret_access_key = {admin_secret}\n\
             [limited]\naws_access_key_id = {limited_id}\naws_secret_access_key = {limited_secret}\n"
        ),
    )
    .unwrap();
    let write_config = |profile: &str| {
        ws.write_raw_config(&format!(
            "[stores.aws]\ntype = \"aws-secretsmanager\"\nregion = \"{region}\"\nendpoint_url = \"{endpoint}\"\n\
             profile = \"{profile}\"\n\
             [[credentials]]\nname = \"db\"\nstore = \"aws\"\nkey = \"{secret_id}\"\nstrategy = \"single\"\n\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {port}, dbname = \"postgres\", \
             username = \"{role}\", admin = \"${{{admin_env}}}\", sslmode = \"disable\" }}\n",
            region = moto.region(),
            endpoint = moto.endpoint(),
            port = ws.pg.port(),
            admin_env = crate::util::ADMIN_ENV,
        ))
    };
    let rekey = |args: &[&str], stdin: &str| {
        let mut cmd = ws.command();
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env("AWS_SHARED_CREDENTIALS_FILE", ws.path("aws-credentials"))
            .env("AWS_CONFIG_FILE", ws.path("no-aws-config"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args);
        run(cmd, stdin)
    };
    write_config("admin");
    rekey(&["import", "db"], &password).assert_code(0);
    let (before, _) = version_at(moto, &secret_id, "AWSCURRENT");

    // The precondition: the limited principal reads the secret but may not move a label.
    write_config("limited");
    rekey(&["status", "db"], "").assert_code(0);
    let denied = boto3(
        moto,
        &format!(
            "import botocore\nsm = boto3.client('secretsmanager', endpoint_url='{}', region_name='{}', \
             aws_access_key_id='{limited_id}', aws_secret_access_key='{limited_secret}')\n\
             try:\n    sm.update_secret_version_stage(SecretId='{secret_id}', VersionStage='AWSPENDING', MoveToVersionId='{before}')\n    print('allowed')\n\
             except botocore.exceptions.ClientError as e:\n    print(e.response['ResponseMetadata']['HTTPStatusCode'], e.response['Error'].get('Message'))",
            moto.endpoint(),
            moto.region()
        ),
    );
    assert!(denied.starts_with("403 "), "precondition: {denied}");

    let r = rekey(&["rotate", "db"], "");
    r.assert_code(1);
    assert!(r.stderr.contains("db"), "{}", r.stderr);
    assert!(
        r.stderr.contains("db: stage: permission denied: "),
        "the credential, the step and the kind: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("secretsmanager:UpdateSecretVersionStage"),
        "the permission is named: {}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    assert!(!r.stderr.contains(&password) && !r.stdout.contains(&password));
    assert!(ws.can_login(&role, &password), "the role's password is untouched");
    assert!(!r.stderr.contains("apply"), "nothing reached the target: {}", r.stderr);
    assert_eq!(
        version_at(moto, &secret_id, "AWSCURRENT").0,
        before,
        "AWSCURRENT unchanged"
    );

    // With the permission, the same secret rotates.
    write_config("admin");
    rekey(&["rotate", "db"], "").assert_code(0);
    assert!(!ws.can_login(&role, &password), "the old password is dead");
    let (after, _) = version_at(moto, &secret_id, "AWSCURRENT");
    assert_ne!(after, before);
    rekey(&["verify", "db"], "").assert_code(0);
}
