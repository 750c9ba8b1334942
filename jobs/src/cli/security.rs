//! `qilin-jobs user|grant|revoke|grants|acl|apikey|audit`: users, project roles, table rules,
//! API keys and the audit log (the work is `qilin_engine::security`; this module parses flags,
//! reads passwords and prints). Every change is audited as user `cli` and announced to the
//! servers of `kylin.rest.servers`, which reload the rules at once.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use qilin_cluster::notify::Notifier;
use qilin_engine::config::Config;
use qilin_engine::security::audit::{AuditLog, Outcome};
use qilin_engine::security::secret::MAX_PASSWORD_BYTES;
use qilin_engine::security::store::{Rule, SecurityStore, TableRule};
use qilin_engine::security::{Principal, ProjectRole};

use crate::JobEngine;

/// The user the audit log names for changes made with the CLI.
const CLI_USER: &str = "cli";

#[derive(Subcommand)]
pub enum SecurityCommand {
    /// Add, change, disable or list users (passwords from --password-stdin or a prompt).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Give a user or group a role in a project (QUERY, OPERATION, MANAGEMENT, ADMIN),
    /// replacing the role it held there.
    Grant {
        role: String,
        #[arg(long)]
        project: String,
        #[command(flatten)]
        who: Who,
    },
    /// Take a user's or group's role in a project away (when ROLE is given, only if it is
    /// the role held).
    Revoke {
        role: Option<String>,
        #[arg(long)]
        project: String,
        #[command(flatten)]
        who: Who,
    },
    /// The roles held, in one project or all.
    Grants {
        #[arg(long)]
        project: Option<String>,
    },
    /// Table, column and row rules inside a project.
    Acl {
        #[command(subcommand)]
        command: AclCommand,
    },
    /// API keys for tools that sign in once (a key is the Basic password or a bearer token).
    Apikey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// The newest audit events, oldest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        user: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    Add {
        name: String,
        /// A global admin (ADMIN in every project, creates projects, manages users).
        #[arg(long)]
        admin: bool,
        /// A group the user belongs to (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// The user can no longer sign in; its tokens and API keys stop working.
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    List,
}

/// `--user U` or `--group G`.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Who {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    group: Option<String>,
}

impl Who {
    fn principal(&self) -> Principal {
        match (&self.user, &self.group) {
            (Some(u), _) => Principal::User(u.clone()),
            (None, Some(g)) => Principal::Group(g.clone()),
            // clap's group requires exactly one.
            (None, None) => Principal::User(String::new()),
        }
    }
}

#[derive(Subcommand)]
pub enum AclCommand {
    /// Deny a whole table: queries naming it fail, metadata leaves it out.
    DenyTable {
        #[arg(long)]
        project: String,
        #[arg(long)]
        table: String,
        #[command(flatten)]
        who: Who,
    },
    /// Deny one column: queries reading it fail, `SELECT *` and metadata leave it out.
    DenyColumn {
        #[arg(long)]
        project: String,
        #[arg(long)]
        table: String,
        #[arg(long)]
        column: String,
        #[command(flatten)]
        who: Who,
    },
    /// Show only the rows passing a SQL predicate over the table's columns.
    RowFilter {
        #[arg(long)]
        project: String,
        #[arg(long)]
        table: String,
        #[arg(long)]
        filter: String,
        #[command(flatten)]
        who: Who,
    },
    List {
        #[arg(long)]
        project: Option<String>,
    },
    /// Remove a rule by its id (see `acl list`).
    Remove { id: String },
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key for a user; the key is printed once (only its hash is stored).
    Create {
        #[arg(long)]
        user: String,
        /// A lifetime (`30d`, `12h`, `90m`, `2w`) or an instant (`2027-01-01T00:00:00Z`,
        /// `2027-01-01`); default: never.
        #[arg(long)]
        expires: Option<String>,
    },
    List {
        #[arg(long)]
        user: Option<String>,
    },
    Revoke {
        id: String,
    },
}

pub async fn run(
    engine: &JobEngine,
    config: &Config,
    command: SecurityCommand,
) -> anyhow::Result<()> {
    let store = SecurityStore::new(engine.metadata().clone());
    let audit = AuditLog::new(engine.metadata().clone(), "qilin-jobs-cli", config);
    let changed = match execute(&store, &audit, command) {
        Ok(changed) => changed,
        Err(e) => {
            flush(&audit);
            return Err(e);
        }
    };
    flush(&audit);
    if let Some(what) = changed {
        notify_peers(engine, config, &what).await;
    }
    Ok(())
}

fn flush(audit: &AuditLog) {
    if let Err(e) = audit.flush() {
        eprintln!("warning: could not write the audit log: {e}");
    }
}

/// Runs a change and audits it; `Some(what)` when something changed.
fn change<T>(
    audit: &AuditLog,
    action: &str,
    target: &str,
    f: impl FnOnce() -> qilin_engine::Result<T>,
) -> anyhow::Result<T> {
    match f() {
        Ok(t) => {
            audit.record(CLI_USER, action, target, Outcome::Ok, "");
            Ok(t)
        }
        Err(e) => {
            audit.record(CLI_USER, action, target, Outcome::Failed, e.to_string());
            Err(e.into())
        }
    }
}

fn execute(
    store: &SecurityStore,
    audit: &AuditLog,
    command: SecurityCommand,
) -> anyhow::Result<Option<String>> {
    match command {
        SecurityCommand::User { command } => user_command(store, audit, command),
        SecurityCommand::Grant { role, project, who } => {
            let role: ProjectRole = role.parse()?;
            let p = who.principal();
            let g = change(audit, "grant", &format!("project {project}"), || {
                store.grant(&project, &p, role)
            })?;
            eprintln!(
                "{} now holds {} in project {}",
                g.principal, g.role, g.project
            );
            Ok(Some(format!("grant {}", g.project)))
        }
        SecurityCommand::Revoke { role, project, who } => {
            let p = who.principal();
            if let Some(role) = role {
                let role: ProjectRole = role.parse()?;
                let held = store
                    .grants(Some(&project))?
                    .into_iter()
                    .find(|g| g.principal == p)
                    .map(|g| g.role);
                if let Some(held) = held.filter(|h| *h != role) {
                    bail!("{p} holds {held} in project {project}, not {role}; nothing revoked");
                }
            }
            let g = change(audit, "revoke", &format!("project {project}"), || {
                store.revoke(&project, &p)
            })?;
            eprintln!(
                "{} no longer holds {} in project {}",
                g.principal, g.role, g.project
            );
            Ok(Some(format!("revoke {}", g.project)))
        }
        SecurityCommand::Grants { project } => {
            println!("{:<24}  {:<30}  ROLE", "PROJECT", "PRINCIPAL");
            for g in store.grants(project.as_deref())? {
                println!(
                    "{:<24}  {:<30}  {}",
                    g.project,
                    g.principal.to_string(),
                    g.role
                );
            }
            Ok(None)
        }
        SecurityCommand::Acl { command } => acl_command(store, audit, command),
        SecurityCommand::Apikey { command } => api_key_command(store, audit, command),
        SecurityCommand::Audit { limit, user, json } => {
            for e in audit.read(limit, user.as_deref())? {
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    println!(
                        "{}  {:<16}  {:<24}  {:<16}  {:<24}  {:<6}  {}",
                        e.time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                        e.user,
                        e.instance,
                        e.action,
                        e.target,
                        e.outcome.as_str(),
                        e.detail
                    );
                }
            }
            Ok(None)
        }
    }
}

fn user_command(
    store: &SecurityStore,
    audit: &AuditLog,
    command: UserCommand,
) -> anyhow::Result<Option<String>> {
    match command {
        UserCommand::Add {
            name,
            admin,
            groups,
            password_stdin,
        } => {
            // Check the name before asking for a password.
            qilin_engine::names::validate_name("user", &name)?;
            let password = read_password(&name, password_stdin)?;
            let u = change(audit, "user.create", &format!("user {name}"), || {
                store.create_user_with_groups(&name, &password, admin, groups.clone())
            })?;
            eprintln!(
                "user {} created{}",
                u.name,
                if u.admin { " (global admin)" } else { "" }
            );
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            store.user(&name)?;
            let password = read_password(&name, password_stdin)?;
            change(audit, "user.passwd", &format!("user {name}"), || {
                store.set_password(&name, &password)
            })?;
            eprintln!("password of user {name} changed");
        }
        UserCommand::Disable { name } => {
            change(audit, "user.disable", &format!("user {name}"), || {
                store.set_disabled(&name, true)
            })?;
            eprintln!("user {name} disabled");
        }
        UserCommand::Enable { name } => {
            change(audit, "user.enable", &format!("user {name}"), || {
                store.set_disabled(&name, false)
            })?;
            eprintln!("user {name} enabled");
        }
        UserCommand::List => {
            println!(
                "{:<24}  {:<5}  {:<8}  {:<20}  GROUPS",
                "NAME", "ADMIN", "DISABLED", "CREATED"
            );
            for u in store.users()? {
                println!(
                    "{:<24}  {:<5}  {:<8}  {:<20}  {}",
                    u.name,
                    u.admin,
                    u.disabled,
                    u.created.format("%Y-%m-%dT%H:%M:%SZ"),
                    u.groups.join(",")
                );
            }
            return Ok(None);
        }
    }
    Ok(Some("users".into()))
}

fn acl_command(
    store: &SecurityStore,
    audit: &AuditLog,
    command: AclCommand,
) -> anyhow::Result<Option<String>> {
    let (project, table, who, rule) = match command {
        AclCommand::List { project } => {
            println!(
                "{:<18}  {:<16}  {:<20}  {:<24}  {:<11}  DETAIL",
                "ID", "PROJECT", "TABLE", "PRINCIPAL", "TYPE"
            );
            for r in store.rules(project.as_deref())? {
                let (kind, detail) = describe(&r);
                println!(
                    "{:<18}  {:<16}  {:<20}  {:<24}  {:<11}  {}",
                    r.id,
                    r.project,
                    r.table,
                    r.principal.to_string(),
                    kind,
                    detail
                );
            }
            return Ok(None);
        }
        AclCommand::Remove { id } => {
            let r = change(audit, "acl.remove", &format!("rule {id}"), || {
                store.remove_rule(&id)
            })?;
            let (kind, detail) = describe(&r);
            eprintln!(
                "removed rule {} ({kind} {detail} on {}.{} for {})",
                r.id, r.project, r.table, r.principal
            );
            return Ok(Some(format!("acl {}", r.project)));
        }
        AclCommand::DenyTable {
            project,
            table,
            who,
        } => (project, table, who, Rule::DenyTable),
        AclCommand::DenyColumn {
            project,
            table,
            column,
            who,
        } => (project, table, who, Rule::DenyColumn { column }),
        AclCommand::RowFilter {
            project,
            table,
            filter,
            who,
        } => (project, table, who, Rule::RowFilter { filter }),
    };
    let p = who.principal();
    let r = change(
        audit,
        "acl.add",
        &format!("table {project}.{table}"),
        || store.add_rule(&project, &table, &p, rule),
    )?;
    let (kind, detail) = describe(&r);
    eprintln!(
        "rule {} added: {kind} {detail} on {}.{} for {}",
        r.id, r.project, r.table, r.principal
    );
    // The id alone on stdout, for scripts.
    println!("{}", r.id);
    Ok(Some(format!("acl {}", r.project)))
}

fn describe(r: &TableRule) -> (&'static str, String) {
    match &r.rule {
        Rule::DenyTable => ("deny_table", String::new()),
        Rule::DenyColumn { column } => ("deny_column", column.clone()),
        Rule::RowFilter { filter } => ("row_filter", filter.clone()),
    }
}

fn api_key_command(
    store: &SecurityStore,
    audit: &AuditLog,
    command: ApiKeyCommand,
) -> anyhow::Result<Option<String>> {
    match command {
        ApiKeyCommand::Create { user, expires } => {
            let expires = expires.as_deref().map(parse_expiry).transpose()?;
            let (info, key) = change(audit, "apikey.create", &format!("user {user}"), || {
                store.create_api_key(&user, expires)
            })?;
            eprintln!(
                "API key {} created for user {} (expires {}); it is shown only now:",
                info.id,
                info.user,
                info.expires
                    .map(|e| e.to_rfc3339())
                    .unwrap_or_else(|| "never".into())
            );
            println!("{key}");
            Ok(Some("apikeys".into()))
        }
        ApiKeyCommand::List { user } => {
            println!(
                "{:<18}  {:<24}  {:<20}  {:<20}  STATUS",
                "ID", "USER", "CREATED", "EXPIRES"
            );
            let now = Utc::now();
            for k in store.api_keys(user.as_deref())? {
                let status = if k.revoked {
                    "revoked"
                } else if !k.is_active(now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<18}  {:<24}  {:<20}  {:<20}  {status}",
                    k.id,
                    k.user,
                    k.created.format("%Y-%m-%dT%H:%M:%SZ"),
                    k.expires
                        .map(|e| e.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "never".into())
                );
            }
            Ok(None)
        }
        ApiKeyCommand::Revoke { id } => {
            let k = change(audit, "apikey.revoke", &format!("apikey {id}"), || {
                store.revoke_api_key(&id)
            })?;
            eprintln!("API key {} of user {} revoked", k.id, k.user);
            Ok(Some("apikeys".into()))
        }
    }
}

/// `30d`, `12h`, `90m`, `45s`, `2w` from now, or an RFC 3339 instant, or a date (midnight UTC).
pub fn parse_expiry(text: &str) -> anyhow::Result<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(at) = d.and_hms_opt(0, 0, 0) {
            return Ok(at.and_utc());
        }
    }
    let bad = || {
        anyhow::anyhow!(
            "--expires {t:?}: expected a lifetime like 30d, 12h, 90m, 2w or an instant like \
             2027-01-01T00:00:00Z"
        )
    };
    let split = t.len().checked_sub(1).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    if n <= 0 || n > 100 * 365 {
        return Err(bad());
    }
    Ok(Utc::now() + chrono::Duration::seconds(n * seconds))
}

/// The password from the first line of standard input (`--password-stdin`) or a no-echo
/// prompt on a terminal (asked twice); never from an argument.
fn read_password(user: &str, from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        // Read at most a little more than the limit: a huge input is refused, not buffered.
        let limit = (MAX_PASSWORD_BYTES + 3) as u64;
        std::io::Read::take(std::io::stdin().lock(), limit)
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            bail!("--password-stdin: standard input held no password (an empty first line)");
        }
        if password.len() > MAX_PASSWORD_BYTES {
            bail!("--password-stdin: the password is longer than {MAX_PASSWORD_BYTES} bytes");
        }
        return Ok(password.to_string());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password: pass --password-stdin and write it to standard input, or run on a \
             terminal to be prompted (passwords are never taken from arguments)"
        );
    }
    let first = rpassword::prompt_password(format!("Password for {user}: "))?;
    let second = rpassword::prompt_password("Again: ")?;
    if first != second {
        bail!("the passwords differ; nothing changed");
    }
    Ok(first)
}

async fn notify_peers(engine: &JobEngine, config: &Config, what: &str) {
    if let Some(n) = Notifier::from_config(config, None) {
        let version = engine.metadata().store().store_version().unwrap_or(0);
        for (peer, e) in n.notify_all(&format!("security {what}"), version).await {
            eprintln!("warning: could not notify {peer} ({e}); it catches up by polling");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_parse_lifetimes_and_instants() {
        let now = Utc::now();
        let d = parse_expiry("30d").unwrap() - now;
        assert!((d.num_days() - 30).abs() <= 1);
        assert!(parse_expiry("12h").unwrap() > now);
        assert_eq!(
            parse_expiry("2027-01-01T00:00:00Z").unwrap().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_expiry("2027-01-01").unwrap().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        for bad in ["", "d", "0d", "-1d", "10y", "soon", "99999999999d"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }
}
