//! `qilin-jobs user|grant|revoke|grants|acl|apikey|audit` through the real binary on a private
//! copy of the SSB metadata: users sign in to a `qilin-server` over that store with what the
//! CLI created (password, API key as the Basic password), revocation and disabling take
//! effect, every change and sign-in is in the audit log, and hostile input (unknown user or
//! project in a grant, a bad row filter, an oversized or missing password, a forged or expired
//! key) is a clear error that changes nothing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use qilin_engine::metadata::managers::Metadata;
use qilin_engine::security::store::SecurityStore;
use qilin_engine::security::ProjectRole;
use qilin_tests::cluster::eventually;
use qilin_tests::compare::{compare, has_order_by, oracle_query, run_query, Expect};
use qilin_tests::server::{connect, try_connect, ServerProcess, SsbServer};

/// Runs `qilin-jobs --conf CONF ARGS` with `stdin` as standard input.
fn jobs(conf: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(qilin_tests::workspace_exe("qilin-jobs"))
        .arg("--conf")
        .arg(conf)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qilin-jobs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("wait for qilin-jobs")
}

fn ok(conf: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = jobs(conf, args, stdin);
    assert!(
        out.status.success(),
        "qilin-jobs {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Fails with a message containing every one of `needles` (and no panic).
fn fails(conf: &Path, args: &[&str], stdin: Option<&str>, needles: &[&str]) {
    let out = jobs(conf, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "qilin-jobs {args:?} succeeded");
    for n in needles {
        assert!(
            stderr.contains(n),
            "qilin-jobs {args:?}: {n:?} not in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every security resource and its version (the audit log aside, which records refusals).
fn security_snapshot(meta: &Metadata) -> Vec<(String, u64)> {
    let store = meta.store();
    store
        .list_all()
        .unwrap()
        .into_iter()
        .filter(|p| {
            ["/user/", "/acl/", "/apikey/"]
                .iter()
                .any(|f| p.starts_with(f))
        })
        .map(|p| {
            let v = store.get(&p).unwrap().unwrap().version;
            (p, v)
        })
        .collect()
}

/// Polls until signing in as `user` with `pass` is refused, failing after `timeout`.
async fn refused_within(addr: &str, user: &str, pass: &str, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while try_connect(addr, user, pass).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{what} still signs in after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_grants_rules_keys_and_audit_through_the_cli() {
    let (props, dir, meta_dir) = SsbServer::private_meta_properties("").await;
    let conf = dir.path().join("kylin.properties");
    std::fs::write(&conf, &props).unwrap();
    let meta =
        Metadata::new(qilin_engine::metadata::open_store(meta_dir.to_str().unwrap()).unwrap());
    let store = SecurityStore::new(meta.clone());

    // Users: passwords only from stdin (or a terminal), never from an argument.
    ok(
        &conf,
        &[
            "user",
            "add",
            "alice",
            "--group",
            "sales",
            "--password-stdin",
        ],
        Some("s3cret\n"),
    );
    ok(
        &conf,
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("r00t\r\n"),
    );
    let before = security_snapshot(&meta);
    fails(&conf, &["user", "add", "bob"], None, &["--password-stdin"]);
    fails(
        &conf,
        &["user", "add", "bob", "--password-stdin"],
        Some(""),
        &["no password"],
    );
    let huge = format!("{}\n", "x".repeat(5000));
    fails(
        &conf,
        &["user", "add", "bob", "--password-stdin"],
        Some(&huge),
        &["1024 bytes"],
    );
    fails(
        &conf,
        &["user", "add", "alice", "--password-stdin"],
        Some("again\n"),
        &["user alice already exists"],
    );
    fails(
        &conf,
        &["user", "add", "../etc", "--password-stdin"],
        Some("x\n"),
        &["invalid user name"],
    );
    assert_eq!(
        security_snapshot(&meta),
        before,
        "a refused user change wrote something"
    );
    let list = ok(&conf, &["user", "list"], None);
    let alice_line = list.lines().find(|l| l.starts_with("alice ")).unwrap();
    assert!(
        alice_line.contains("false") && alice_line.ends_with("sales"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("root ") && l.contains("true")),
        "{list}"
    );

    // Grants.
    ok(
        &conf,
        &["grant", "QUERY", "--project", "ssb", "--user", "alice"],
        None,
    );
    ok(
        &conf,
        &["grant", "operation", "--project", "ssb", "--group", "ops"],
        None,
    );
    let before = security_snapshot(&meta);
    fails(
        &conf,
        &["grant", "QUERY", "--project", "nope", "--user", "alice"],
        None,
        &["project nope not found"],
    );
    fails(
        &conf,
        &["grant", "QUERY", "--project", "ssb", "--user", "mallory"],
        None,
        &["user mallory not found"],
    );
    fails(
        &conf,
        &["grant", "OWNER", "--project", "ssb", "--user", "alice"],
        None,
        &["QUERY, OPERATION, MANAGEMENT or ADMIN"],
    );
    fails(
        &conf,
        &[
            "grant",
            "QUERY",
            "--project",
            "ssb",
            "--user",
            "alice",
            "--group",
            "g",
        ],
        None,
        &["cannot be used with"],
    );
    fails(
        &conf,
        &["revoke", "ADMIN", "--project", "ssb", "--user", "alice"],
        None,
        &["holds QUERY", "nothing revoked"],
    );
    fails(
        &conf,
        &["revoke", "--project", "ssb", "--user", "root"],
        None,
        &["not found"],
    );
    assert_eq!(
        security_snapshot(&meta),
        before,
        "a refused grant wrote something"
    );
    let grants = ok(&conf, &["grants", "--project", "ssb"], None);
    assert!(
        grants.contains("user alice") && grants.contains("QUERY"),
        "{grants}"
    );
    assert!(
        grants.contains("group ops") && grants.contains("OPERATION"),
        "{grants}"
    );
    ok(
        &conf,
        &["revoke", "--project", "ssb", "--group", "ops"],
        None,
    );

    // Table rules.
    let deny = ok(
        &conf,
        &[
            "acl",
            "deny-column",
            "--project",
            "ssb",
            "--table",
            "customer",
            "--column",
            "c_phone",
            "--user",
            "alice",
        ],
        None,
    );
    let deny_id = deny.trim().to_string();
    ok(
        &conf,
        &[
            "acl",
            "row-filter",
            "--project",
            "ssb",
            "--table",
            "customer",
            "--filter",
            "c_region = 'ASIA'",
            "--group",
            "sales",
        ],
        None,
    );
    ok(
        &conf,
        &[
            "acl",
            "deny-table",
            "--project",
            "ssb",
            "--table",
            "part",
            "--user",
            "alice",
        ],
        None,
    );
    let before = security_snapshot(&meta);
    fails(
        &conf,
        &[
            "acl",
            "row-filter",
            "--project",
            "ssb",
            "--table",
            "customer",
            "--filter",
            "c_regio = 'ASIA'",
            "--user",
            "alice",
        ],
        None,
        &["row filter on ssb.customer", "c_regio"],
    );
    fails(
        &conf,
        &[
            "acl",
            "row-filter",
            "--project",
            "ssb",
            "--table",
            "customer",
            "--filter",
            "c_custkey + 1",
            "--user",
            "alice",
        ],
        None,
        &["not a boolean predicate"],
    );
    fails(
        &conf,
        &[
            "acl",
            "deny-column",
            "--project",
            "ssb",
            "--table",
            "customer",
            "--column",
            "nope",
            "--user",
            "alice",
        ],
        None,
        &["column ssb.customer.nope not found"],
    );
    fails(
        &conf,
        &[
            "acl",
            "deny-table",
            "--project",
            "ssb",
            "--table",
            "nope",
            "--user",
            "alice",
        ],
        None,
        &["table ssb.nope not found"],
    );
    fails(
        &conf,
        &["acl", "remove", "r0000"],
        None,
        &["rule r0000 not found"],
    );
    assert_eq!(
        security_snapshot(&meta),
        before,
        "a refused rule wrote something"
    );
    let rules = ok(&conf, &["acl", "list", "--project", "ssb"], None);
    assert_eq!(rules.lines().count(), 4, "{rules}");
    assert!(
        rules.contains(&deny_id) && rules.contains("c_region = 'ASIA'"),
        "{rules}"
    );
    // What the rules mean for alice (QUERY, in group sales).
    let access = store.load().unwrap().access("alice");
    assert_eq!(access.role("ssb"), Some(ProjectRole::Query));
    let customer = access.restriction("ssb", "customer").unwrap();
    assert!(customer.denies_column("c_phone"));
    assert_eq!(customer.row_filters, ["c_region = 'ASIA'"]);
    assert!(access.restriction("ssb", "part").unwrap().denied);
    ok(&conf, &["acl", "remove", &deny_id], None);
    assert!(!ok(&conf, &["acl", "list"], None).contains(&deny_id));

    // API keys.
    let key = ok(
        &conf,
        &["apikey", "create", "--user", "alice", "--expires", "30d"],
        None,
    )
    .trim()
    .to_string();
    assert!(key.starts_with("qk_"), "{key}");
    fails(
        &conf,
        &["apikey", "create", "--user", "mallory"],
        None,
        &["user mallory not found"],
    );
    fails(
        &conf,
        &[
            "apikey",
            "create",
            "--user",
            "alice",
            "--expires",
            "2020-01-01T00:00:00Z",
        ],
        None,
        &["in the past"],
    );
    fails(
        &conf,
        &["apikey", "create", "--user", "alice", "--expires", "soon"],
        None,
        &["--expires"],
    );
    let keys = ok(&conf, &["apikey", "list", "--user", "alice"], None);
    assert_eq!(
        keys.lines().filter(|l| l.ends_with("active")).count(),
        1,
        "{keys}"
    );
    // The secret is shown once and stored nowhere.
    let secret = key.rsplit('_').next().unwrap();
    for p in meta.store().list("/apikey").unwrap() {
        let data = meta.store().get(&p).unwrap().unwrap().data;
        assert!(!String::from_utf8_lossy(&data).contains(secret));
    }

    // A server over the store: what the CLI made signs in.
    let exe = qilin_tests::server_exe();
    let server_props = props.clone();
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&exe, &server_props))
        .await
        .unwrap();
    let addr = server.addr.clone();
    let oracle = qilin_tests::oracle(
        &qilin_tests::server::shared_ssb_source_dir(qilin_tests::server::SCALE).await,
    )
    .await;
    let queries = qilin_tests::corpus::ssb_queries();
    for (user, pass) in [
        ("root", "r00t"),
        ("alice", "s3cret"),
        ("alice", key.as_str()),
    ] {
        let mut c = connect(&addr, user, pass).await;
        for (name, sql) in queries.iter().filter(|(n, _)| n == "Q1.1" || n == "Q1.2") {
            let want = oracle_query(&oracle, sql).await;
            let expect = Expect {
                ordered: has_order_by(sql),
                approx: vec![],
            };
            let got = run_query(&mut c, sql).await.unwrap();
            compare(&got, &want, &expect).unwrap_or_else(|e| panic!("{user} {name}: {e}"));
        }
    }
    assert!(try_connect(&addr, "alice", "wrong").await.is_err());
    assert!(
        try_connect(&addr, "root", &key).await.is_err(),
        "alice's key as root's password"
    );
    let forged = format!("{}{}", &key[..key.len() - 4], "0000");
    let forged = if forged == key {
        format!("{}1111", &key[..key.len() - 4])
    } else {
        forged
    };
    assert!(try_connect(&addr, "alice", &forged).await.is_err());
    // A short-lived key works, then expires.
    let short = ok(
        &conf,
        &["apikey", "create", "--user", "alice", "--expires", "8s"],
        None,
    )
    .trim()
    .to_string();
    // (Accepted once the server has reloaded the keys.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while try_connect(&addr, "alice", &short).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "a new key does not work after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    refused_within(
        &addr,
        "alice",
        &short,
        Duration::from_secs(15),
        "an expired key",
    )
    .await;

    // Revoked by the CLI: the server stops accepting the key within its reload check.
    let id = keys
        .lines()
        .find(|l| key.contains(l.split_whitespace().next().unwrap()))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    ok(&conf, &["apikey", "revoke", &id], None);
    let revoked = ok(&conf, &["apikey", "list"], None);
    assert!(
        revoked
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("revoked")),
        "{revoked}"
    );
    refused_within(
        &addr,
        "alice",
        &key,
        Duration::from_secs(5),
        "a revoked key",
    )
    .await;
    // Disabled: the password stops working too; enabled again, it works.
    ok(&conf, &["user", "disable", "alice"], None);
    refused_within(
        &addr,
        "alice",
        "s3cret",
        Duration::from_secs(5),
        "a disabled user",
    )
    .await;
    ok(&conf, &["user", "enable", "alice"], None);
    ok(
        &conf,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("n3w\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while try_connect(&addr, "alice", "n3w").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new password does not work after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(try_connect(&addr, "alice", "s3cret").await.is_err());

    // The audit log has it all, with users and outcomes.
    let events: Vec<serde_json::Value> = eventually(
        Duration::from_secs(10),
        "the server's sign-ins in the audit log",
        || {
            let out = jobs(&conf, &["audit", "--limit", "1000", "--json"], None);
            let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let has = |user: &str, action: &str, outcome: &str| {
                events
                    .iter()
                    .any(|e| e["user"] == user && e["action"] == action && e["outcome"] == outcome)
            };
            (has("alice", "sign-in", "ok") && has("alice", "sign-in", "denied")).then_some(events)
        },
    )
    .await;
    let has = |user: &str, action: &str, outcome: &str| {
        events
            .iter()
            .any(|e| e["user"] == user && e["action"] == action && e["outcome"] == outcome)
    };
    for (user, action, outcome) in [
        ("cli", "user.create", "ok"),
        ("cli", "user.create", "failed"),
        ("cli", "grant", "ok"),
        ("cli", "grant", "failed"),
        ("cli", "revoke", "ok"),
        ("cli", "acl.add", "ok"),
        ("cli", "acl.add", "failed"),
        ("cli", "acl.remove", "ok"),
        ("cli", "apikey.create", "ok"),
        ("cli", "apikey.revoke", "ok"),
        ("cli", "user.disable", "ok"),
        ("cli", "user.passwd", "ok"),
        ("root", "sign-in", "ok"),
        ("alice", "sign-in", "ok"),
        ("alice", "sign-in", "denied"),
        ("root", "sign-in", "denied"),
    ] {
        assert!(
            has(user, action, outcome),
            "no {user} {action} {outcome} in the audit log"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["instance"].as_str().unwrap().starts_with("qilin-server@")));
    // The secrets never reach the log.
    let all = serde_json::to_string(&events).unwrap();
    for s in ["s3cret", "r00t", "n3w", secret] {
        assert!(!all.contains(s), "{s} in the audit log");
    }
    let alice_only = ok(&conf, &["audit", "--user", "alice", "--limit", "3"], None);
    assert_eq!(alice_only.lines().count(), 3, "{alice_only}");
    assert!(
        alice_only.lines().all(|l| l.contains(" alice ")),
        "{alice_only}"
    );
    drop(server);
}
