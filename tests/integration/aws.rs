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
