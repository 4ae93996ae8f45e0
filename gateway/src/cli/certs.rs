//! `tongban certs …`: the department CA an operator runs — create a CA (root or
//! intermediate), issue server and client certificates, revoke, publish the CRL,
//! list what was issued. The work is the `certs` crate's `CaDir`; this module parses
//! arguments and prints.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use audit::signing::Signer;
use certs::time::format_description::well_known::Rfc3339;
use certs::time::{Duration, OffsetDateTime};
use certs::{
    rfc3339, CaDir, CertError, Identity, InitOptions, IssueRequest, KeyAlg, RevocationReason,
    Status, Subject, Validity,
};
use clap::{Args, Subcommand};

use super::Failure;

/// `tongban certs` arguments.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// CA directory (default: `pki` beside the config file).
    #[arg(long, global = true)]
    pub ca_dir: Option<PathBuf>,
    /// Only the config file's location matters here: the default CA directory is
    /// beside it.
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// What to do.
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// `tongban certs …`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA in the CA directory: a root, or with --parent an intermediate
    /// signed by the CA in that directory.
    Init {
        /// Common name of the CA, e.g. "Shenzhen HRSS CA".
        #[arg(long, default_value = "Tongban CA")]
        cn: String,
        /// Key algorithm: ecdsa-p256 or ed25519.
        #[arg(long, default_value = "ecdsa-p256")]
        alg: String,
        /// Validity in days (default 3650 for a root, 1825 for an intermediate).
        #[arg(long)]
        days: Option<u32>,
        /// Directory of the CA that signs this one (makes an intermediate).
        #[arg(long)]
        parent: Option<PathBuf>,
        /// Days until the first CRL's next update.
        #[arg(long, default_value_t = 7)]
        crl_days: u32,
    },
    /// Issue a server or client certificate.
    Issue {
        /// Which kind.
        #[command(subcommand)]
        kind: IssueKind,
    },
    /// Revoke a certificate by serial (hex) or certificate file; writes a new CRL.
    Revoke {
        /// Serial number (hex, as `certs list` shows) or a certificate file.
        target: String,
        /// unspecified, key-compromise, ca-compromise, affiliation-changed,
        /// superseded, cessation-of-operation or privilege-withdrawn.
        #[arg(long)]
        reason: String,
        /// Days until the new CRL's next update.
        #[arg(long, default_value_t = 7)]
        crl_days: u32,
    },
    /// Write a fresh signed CRL (to crl.pem in the CA directory, or --out).
    Crl {
        /// Days until its next update.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Write here instead.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List every issued certificate with identity, serial, expiry and status.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a new Ed25519 key for signing answers and audit checkpoints (the
    /// config's `signing_key`): PKCS#8 PEM, mode 0600. Gateways behind one load
    /// balancer share one, so that one JWKS verifies every answer.
    SigningKey {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing key (what it signed then verifies only against its
        /// old JWKS).
        #[arg(long)]
        force: bool,
    },
}

/// `tongban certs issue …`
#[derive(Debug, Subcommand)]
pub enum IssueKind {
    /// A server certificate (extended key usage serverAuth only).
    Server {
        /// DNS name (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// IP address (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Common options.
        #[command(flatten)]
        common: IssueOptions,
    },
    /// A client certificate for a system (extended key usage clientAuth only; its
    /// identity is the URI SAN). Admin and auditor systems get client certificates
    /// too: roles are bound to identities in policy, not in certificates.
    #[command(visible_aliases = ["admin", "auditor"])]
    Client {
        /// The system's identity, urn:tongban:<dept-code>:<system-id>.
        #[arg(long)]
        identity: String,
        /// Common name for people reading the certificate (default: the identity).
        #[arg(long, default_value = "")]
        cn: String,
        /// Common options.
        #[command(flatten)]
        common: IssueOptions,
    },
}

/// Options of both `issue` kinds.
#[derive(Debug, Args)]
pub struct IssueOptions {
    /// File stem: writes <out>/<name>.pem and <out>/<name>.key (default: from the
    /// identity or the first DNS name / IP).
    #[arg(long)]
    pub name: Option<String>,
    /// Directory to write to (default: the CA directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Validity in days from now.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Start of validity, RFC 3339 (with --not-after, instead of --days).
    #[arg(long, requires = "not_after")]
    pub not_before: Option<String>,
    /// End of validity, RFC 3339.
    #[arg(long, requires = "not_before")]
    pub not_after: Option<String>,
    /// Key algorithm of the new key: ecdsa-p256 or ed25519.
    #[arg(long, default_value = "ecdsa-p256")]
    pub alg: String,
    /// Replace existing files of that name.
    #[arg(long)]
    pub force: bool,
}

/// Run a `certs` command.
pub async fn run(args: CertsArgs) -> Result<(), Failure> {
    let dir = args
        .ca_dir
        .clone()
        .unwrap_or_else(|| default_ca_dir(&args.config.path));
    match args.command {
        CertsCommand::Init {
            cn,
            alg,
            days,
            parent,
            crl_days,
        } => init(&dir, &cn, &alg, days, parent.as_deref(), crl_days),
        CertsCommand::Issue { kind } => issue(&dir, kind),
        CertsCommand::Revoke {
            target,
            reason,
            crl_days,
        } => revoke(&dir, &target, &reason, crl_days),
        CertsCommand::Crl { days, out } => crl(&dir, days, out.as_deref()),
        CertsCommand::List { json } => list(&dir, json),
        CertsCommand::SigningKey { out, force } => signing_key(&out, force),
    }
}

/// `pki` beside the config file.
pub fn default_ca_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("pki"), |p| p.join("pki"))
}

/// Exit 2 for bad input (files, arguments), 1 when carrying out a valid request failed.
fn failure(e: CertError) -> Failure {
    if e.is_bad_input() {
        Failure::Usage(e.to_string())
    } else {
        Failure::Failed(e.to_string())
    }
}

fn usage(option: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Usage(format!("{option}: {e}"))
}

fn init(
    dir: &Path,
    cn: &str,
    alg: &str,
    days: Option<u32>,
    parent: Option<&Path>,
    crl_days: u32,
) -> Result<(), Failure> {
    let alg: KeyAlg = alg.parse().map_err(|e| usage("--alg", e))?;
    let parent = parent.map(CaDir::open).transpose().map_err(failure)?;
    let days = days.unwrap_or(if parent.is_some() { 1825 } else { 3650 });
    let options = InitOptions {
        common_name: cn.to_owned(),
        alg,
        validity: Validity::days(days).map_err(|e| usage("--days", e))?,
        crl_next_update: crl_window(crl_days)?,
    };
    let ca = CaDir::init(dir, &options, parent.as_ref()).map_err(failure)?;
    let what = if parent.is_some() {
        "intermediate CA"
    } else {
        "root CA"
    };
    let info = ca.certificate();
    println!(
        "created {what} {} ({alg}, valid until {}) in {}",
        info.subject,
        rfc3339(info.not_after),
        dir.display()
    );
    println!("  certificate: {}", dir.join(certs::CA_CERT).display());
    println!(
        "  key:         {} (mode 0600; keep it secret)",
        dir.join(certs::CA_KEY).display()
    );
    println!("  CRL:         {}", dir.join(certs::CRL).display());
    if let Some(p) = &parent {
        println!(
            "  chain:       {} (signed by {}; gateways trust the root and list both CRLs)",
            dir.join(certs::CHAIN).display(),
            p.certificate().subject
        );
    }
    Ok(())
}

fn signing_key(out: &Path, force: bool) -> Result<(), Failure> {
    if out.exists() && !force {
        return Err(Failure::Usage(format!(
            "--out: {} exists; pass --force to replace it",
            out.display()
        )));
    }
    let pem = Signer::generate_pem().map_err(|e| Failure::Failed(e.to_string()))?;
    certs::write_private_pem(out, &pem).map_err(failure)?;
    let signer = Signer::load(out).map_err(|e| Failure::Failed(e.to_string()))?;
    println!(
        "wrote signing key {} (Ed25519, PKCS#8, mode 0600), key id {}",
        out.display(),
        signer.kid()
    );
    Ok(())
}

fn issue(dir: &Path, kind: IssueKind) -> Result<(), Failure> {
    let (subject, common, default_name) = match kind {
        IssueKind::Server { dns, ip, common } => {
            if dns.is_empty() && ip.is_empty() {
                return Err(Failure::Usage(
                    "issue server: give at least one --dns or --ip".into(),
                ));
            }
            let name = dns
                .first()
                .cloned()
                .or_else(|| ip.first().map(|i| i.to_string().replace(':', "-")))
                .unwrap_or_default();
            (Subject::Server { dns, ips: ip }, common, name)
        }
        IssueKind::Client {
            identity,
            cn,
            common,
        } => {
            let identity: Identity = identity.parse().map_err(|e| usage("--identity", e))?;
            let name = format!("{}-{}", identity.department(), identity.system());
            (
                Subject::Client {
                    identity,
                    common_name: cn,
                },
                common,
                name,
            )
        }
    };
    let request = IssueRequest {
        subject,
        validity: validity(&common)?,
        key_alg: common.alg.parse().map_err(|e| usage("--alg", e))?,
    };
    let mut ca = CaDir::open(dir).map_err(failure)?;
    let out = common.out.clone().unwrap_or_else(|| dir.to_owned());
    let name = common.name.clone().unwrap_or(default_name);
    let issued = ca
        .issue(&request, &out, &name, common.force)
        .map_err(failure)?;
    let info = &issued.info;
    println!(
        "issued {} certificate for {}: serial {}, valid {} to {}",
        info.kind,
        info.label(),
        info.serial,
        rfc3339(info.not_before),
        rfc3339(info.not_after)
    );
    println!("  certificate: {}", issued.cert.display());
    println!("  key:         {} (mode 0600)", issued.key.display());
    let now = OffsetDateTime::now_utc();
    if info.not_after < now || info.not_before > now {
        eprintln!("note: this certificate is not valid now");
    }
    Ok(())
}

fn validity(o: &IssueOptions) -> Result<Validity, Failure> {
    let parse = |option: &str, v: &str| {
        OffsetDateTime::parse(v, &Rfc3339).map_err(|e| {
            usage(
                option,
                format!("`{v}` is not an RFC 3339 time like 2027-01-31T00:00:00Z: {e}"),
            )
        })
    };
    match (&o.not_before, &o.not_after) {
        (Some(b), Some(a)) => {
            Validity::between(parse("--not-before", b)?, parse("--not-after", a)?)
                .map_err(|e| usage("--not-after", e))
        }
        _ => Validity::days(o.days).map_err(|e| usage("--days", e)),
    }
}

fn crl_window(days: u32) -> Result<Duration, Failure> {
    if days == 0 {
        return Err(Failure::Usage(
            "--crl-days/--days: the next CRL must be due at least one day ahead".into(),
        ));
    }
    Ok(Duration::days(i64::from(days)))
}

fn revoke(dir: &Path, target: &str, reason: &str, crl_days: u32) -> Result<(), Failure> {
    let reason: RevocationReason = reason.parse().map_err(|e| usage("--reason", e))?;
    let window = crl_window(crl_days)?;
    let ca = CaDir::open(dir).map_err(failure)?;
    let done = ca.revoke(target, reason, window).map_err(failure)?;
    let e = &done.entry;
    if done.already {
        println!(
            "{} certificate {} (serial {}) was already revoked",
            e.kind,
            e.label(),
            e.serial
        );
    } else {
        println!(
            "revoked {} certificate {} (serial {}), reason {reason}",
            e.kind,
            e.label(),
            e.serial
        );
    }
    print_crl(&done.crl);
    Ok(())
}

fn crl(dir: &Path, days: u32, out: Option<&Path>) -> Result<(), Failure> {
    let window = crl_window(days)?;
    let ca = CaDir::open(dir).map_err(failure)?;
    let written = ca.write_crl(window, out).map_err(failure)?;
    print_crl(&written);
    Ok(())
}

fn print_crl(c: &certs::CrlWritten) {
    println!(
        "CRL #{} listing {} revoked certificate(s) written to {}; next update due {}",
        c.number,
        c.revoked,
        c.path.display(),
        rfc3339(c.next_update)
    );
    println!(
        "Gateways listing it in [tls] crls pick it up within a second (or at once on SIGHUP)."
    );
}

fn list(dir: &Path, json: bool) -> Result<(), Failure> {
    let ca = CaDir::open(dir).map_err(failure)?;
    let index = ca.index().map_err(failure)?;
    let now = OffsetDateTime::now_utc();
    if json {
        let items: Vec<serde_json::Value> = index
            .certificates
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                v["status"] = serde_json::Value::String(status_word(e.status(now)).into());
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&items).map_err(|e| Failure::Failed(e.to_string()))?
        );
        return Ok(());
    }
    println!("CA {} ({})", ca.certificate().subject, dir.display());
    if index.certificates.is_empty() {
        println!("no certificates issued yet");
        return Ok(());
    }
    println!(
        "{:<34} {:<7} {:<40} {:<21} STATUS",
        "SERIAL", "KIND", "IDENTITY / NAMES", "NOT AFTER"
    );
    for e in &index.certificates {
        println!(
            "{:<34} {:<7} {:<40} {:<21} {}",
            e.serial,
            e.kind,
            e.label(),
            rfc3339(e.not_after),
            e.status(now)
        );
    }
    Ok(())
}

/// The status as one word, for JSON.
fn status_word(s: Status) -> &'static str {
    match s {
        Status::Valid => "valid",
        Status::ExpiresSoon => "expires-soon",
        Status::NotYetValid => "not-yet-valid",
        Status::Expired => "expired",
        Status::Revoked(_) => "revoked",
    }
}
