//! The deployment files in `deploy/`, checked without a container engine or a
//! cluster: every YAML file parses; the compose file, the Kubernetes manifests and the
//! systemd unit have what running Tongban in production needs (two gateways behind a
//! TCP balancer, readiness on `/readyz`, replicas and a disruption budget, hardening);
//! and every gateway config they carry parses as `tongban serve` would parse it, with
//! the files it names provided by the mounts that carry them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gateway::config::{Config, Env, StateDb};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(rel: &str) -> String {
    let path = deploy_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {y:?}"))
}

fn list(y: &Yaml) -> Vec<Yaml> {
    y.as_vec().cloned().unwrap_or_default()
}

/// Every file under `dir` whose name ends in one of `exts`, relative to deploy/.
fn files(dir: &Path, exts: &[&str], out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, exts, out);
        } else if exts.iter().any(|e| path.to_string_lossy().ends_with(e)) {
            let rel = path.strip_prefix(deploy_dir()).unwrap();
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

/// A gateway config parsed as `tongban serve` parses it. Its absolute paths under
/// /etc/tongban and /var/lib/tongban are moved into a temporary directory, and each
/// file the config names (Config checks that they exist) is created there, empty of
/// meaning. Returns the config and the files it needed, as absolute paths inside the
/// deployment.
struct Parsed {
    config: Config,
    needed: Vec<String>,
    root: tempfile::TempDir,
}

impl Parsed {
    fn new(what: &str, text: &str, env: &Env) -> Self {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().display().to_string();
        let mut moved = text.to_owned();
        for prefix in ["/etc/tongban/", "/var/lib/tongban/"] {
            moved = moved.replace(&format!("\"{prefix}"), &format!("\"{base}{prefix}"));
        }
        let path = root.path().join("etc/tongban/tongban.toml");
        let mut needed = Vec::new();
        for _ in 0..64 {
            match Config::parse_with(&path, &moved, env) {
                Ok(config) => {
                    return Self {
                        config,
                        needed,
                        root,
                    }
                }
                Err(e) => {
                    let missing = e
                        .message
                        .split_once("no such file ")
                        .map(|(_, f)| f.trim().to_owned())
                        .filter(|f| f.starts_with(&base))
                        .unwrap_or_else(|| panic!("{what}: {e}"));
                    let file = Path::new(&missing);
                    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                    std::fs::write(file, "placeholder").unwrap();
                    needed.push(missing[base.len()..].to_owned());
                }
            }
        }
        panic!("{what}: names too many files");
    }

    /// A path of the config as it is inside the deployment.
    fn inside(&self, p: &Path) -> String {
        let s = p.display().to_string();
        let base = self.root.path().display().to_string();
        s.strip_prefix(&base).map(str::to_owned).unwrap_or(s)
    }

    /// The paths the gateway writes to.
    fn writes(&self) -> Vec<String> {
        let a = &self.config.audit;
        let mut out = vec![self.inside(&a.archive_dir)];
        if let Some(f) = &a.checkpoint_file {
            out.push(self.inside(f));
        }
        if let StateDb::Sqlite(p) = &self.config.state_db {
            out.push(self.inside(p));
        }
        out
    }
}

fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.starts_with(&format!("{dir}/"))
}

#[test]
fn every_yaml_file_parses() {
    let mut found = Vec::new();
    files(&deploy_dir(), &[".yaml", ".yml"], &mut found);
    assert!(found.len() >= 7, "YAML files: {found:?}");
    for f in &found {
        let docs = yaml(f);
        assert!(!docs.is_empty(), "deploy/{f} is empty");
        for d in &docs {
            assert!(
                d.as_hash().is_some(),
                "deploy/{f}: a document is not a mapping"
            );
        }
    }
}

#[test]
fn every_gateway_config_parses() {
    let mut found = Vec::new();
    files(&deploy_dir().join("config"), &[".toml"], &mut found);
    assert!(found.len() >= 2, "configs: {found:?}");
    for f in &found {
        let p = Parsed::new(f, &read(f), &Env::default());
        assert!(!p.config.datasets.is_empty(), "{f}: serves no dataset");
        for n in &p.needed {
            assert!(
                under(n, "/etc/tongban"),
                "{f}: reads {n} from outside /etc/tongban"
            );
        }
        for w in p.writes() {
            assert!(
                under(&w, "/var/lib/tongban"),
                "{f}: writes {w} outside /var/lib/tongban"
            );
        }
    }
}

/// `src:dst[:mode]` of a compose volume entry.
fn mount(v: &Yaml) -> (String, String, bool) {
    let s = str_of(v, "volume");
    let parts: Vec<&str> = s.split(':').collect();
    assert!(parts.len() >= 2, "volume {s:?}: expected src:dst[:mode]");
    (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts
            .get(2)
            .is_some_and(|m| m.split(',').any(|o| o == "ro")),
    )
}

fn env_of(service: &Yaml) -> BTreeMap<String, String> {
    service["environment"]
        .as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Yaml::Integer(i) => i.to_string(),
                        other => str_of(other, "environment value").to_owned(),
                    };
                    (str_of(k, "environment name").to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn depends(service: &Yaml, on: &str) -> String {
    service["depends_on"][on]["condition"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

#[test]
fn compose_runs_two_gateways_behind_a_tcp_balancer() {
    let doc = &yaml("compose.yaml")[0];
    let services = doc["services"].as_hash().expect("services");
    let names: BTreeSet<&str> = services.keys().map(|k| str_of(k, "service")).collect();
    for want in ["postgres", "setup", "lb", "otel-collector", "jaeger"] {
        assert!(names.contains(want), "compose.yaml has no service {want}");
    }
    for (name, s) in services {
        let name = str_of(name, "service");
        let image = str_of(&s["image"], "image");
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{name}: pin the image ({image})"
        );
        for v in list(&s["volumes"]) {
            let (src, _, _) = mount(&v);
            if src.starts_with('.') {
                assert!(
                    deploy_dir().join(&src).exists(),
                    "{name}: mounts {src}, which does not exist"
                );
            }
        }
    }

    // The gateways: at least two, each healthy only when /readyz says so, after setup
    // and the database, on the mounted config, with the files it names mounted.
    let gateways: Vec<(&str, &Yaml)> = services
        .iter()
        .filter(|(_, s)| {
            list(&s["command"])
                .iter()
                .any(|c| c.as_str() == Some("serve"))
        })
        .map(|(n, s)| (str_of(n, "service"), s))
        .collect();
    assert!(gateways.len() >= 2, "fewer than two gateways: {gateways:?}");
    let mut nodes = BTreeSet::new();
    let mut config_text = None;
    for (name, s) in &gateways {
        let test: Vec<String> = list(&s["healthcheck"]["test"])
            .iter()
            .map(|t| str_of(t, "healthcheck").to_owned())
            .collect();
        assert!(
            test.iter().any(|t| t.contains("/readyz")),
            "{name}: the healthcheck does not ask /readyz: {test:?}"
        );
        assert_eq!(
            depends(s, "setup"),
            "service_completed_successfully",
            "{name}"
        );
        assert_eq!(depends(s, "postgres"), "service_healthy", "{name}");
        let node = env_of(s).get("TONGBAN_NODE").cloned();
        assert!(
            node.as_ref().is_some_and(|n| nodes.insert(n.clone())),
            "{name}: needs its own TONGBAN_NODE (audit records name the gateway)"
        );
        let mounts: Vec<(String, String, bool)> = list(&s["volumes"]).iter().map(mount).collect();
        let (src, _, _) = mounts
            .iter()
            .find(|(_, dst, _)| dst == "/etc/tongban/tongban.toml")
            .unwrap_or_else(|| panic!("{name}: no config at /etc/tongban/tongban.toml"));
        assert!(src.starts_with("./config/"), "{name}: config from {src}");
        let text = read(src.trim_start_matches("./"));
        let env = Env::from_pairs(env_of(s));
        let p = Parsed::new(&format!("{name}: {src}"), &text, &env);
        for n in &p.needed {
            assert!(
                mounts
                    .iter()
                    .any(|(_, dst, _)| dst != "/etc/tongban/tongban.toml" && under(n, dst)),
                "{name}: the config reads {n}, which no volume provides"
            );
        }
        if s["read_only"].as_bool() == Some(true) {
            for w in p.writes() {
                assert!(
                    mounts.iter().any(|(_, dst, ro)| !ro && under(&w, dst)),
                    "{name}: the config writes {w} but the container is read-only there"
                );
            }
        }
        // Services it talks to by name exist.
        match &p.config.state_db {
            StateDb::Postgres(url) => {
                let host = host_port(url);
                assert!(host.starts_with("postgres:"), "{name}: state_db at {host}");
            }
            other => panic!("{name}: gateways sharing a store need PostgreSQL, not {other}"),
        }
        let otlp = host_port(&p.config.telemetry.otlp_endpoint);
        let collector = otlp.split(':').next().unwrap_or_default();
        assert!(
            names.contains(collector),
            "{name}: OTLP to {otlp}, no such service"
        );
        config_text = Some(text);
    }
    let config_text = config_text.unwrap();

    // The balancer passes TCP through (mTLS ends at the gateways) to every gateway,
    // checking their readiness.
    let lb = &services[&Yaml::String("lb".into())];
    let image = str_of(&lb["image"], "lb image");
    assert!(image.starts_with("haproxy"), "lb: {image}");
    let (cfg, _, _) = list(&lb["volumes"])
        .iter()
        .map(mount)
        .find(|(_, dst, _)| dst.ends_with("haproxy.cfg"))
        .expect("lb: haproxy.cfg mounted");
    let cfg = read(cfg.trim_start_matches("./"));
    let lines: Vec<&str> = cfg
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(lines.contains(&"mode tcp"), "haproxy.cfg: not mode tcp");
    assert!(
        !lines.iter().any(|l| l.starts_with("mode http")),
        "haproxy.cfg: mode http"
    );
    assert!(
        lines.contains(&"option httpchk GET /readyz"),
        "haproxy.cfg: no /readyz check"
    );
    let compose = Parsed::new("compose config", &config_text, &Env::default());
    let listen_port = compose.config.listen.port();
    for (name, _) in &gateways {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("server ") && l.contains(&format!("{name}:{listen_port}"))),
            "haproxy.cfg does not balance to {name}:{listen_port}"
        );
    }
    for (name, _) in &gateways {
        assert_eq!(depends(lb, name), "service_healthy", "lb waits for {name}");
    }

    // The collector receives OTLP and sends traces to the trace viewer.
    let collector = &services[&Yaml::String("otel-collector".into())];
    assert!(str_of(&collector["image"], "image").contains("opentelemetry-collector"));
    let (cfg, _, _) = list(&collector["volumes"])
        .iter()
        .map(mount)
        .next()
        .expect("collector config");
    let cfg = &YamlLoader::load_from_str(&read(cfg.trim_start_matches("./"))).unwrap()[0];
    assert!(cfg["receivers"]["otlp"]["protocols"]["grpc"]
        .as_hash()
        .is_some());
    let traces = &cfg["service"]["pipelines"]["traces"];
    let exporter = str_of(&list(&traces["exporters"])[0], "traces exporter").to_owned();
    let endpoint = str_of(&cfg["exporters"][exporter.as_str()]["endpoint"], "endpoint");
    let viewer = endpoint.split(':').next().unwrap();
    assert!(
        str_of(&services[&Yaml::String(viewer.into())]["image"], "image").contains("jaeger"),
        "traces go to {endpoint}, not Jaeger"
    );

    // Certificates come from `tongban certs`; the setup script makes every file the
    // gateways' config names and applies the agreements.
    let setup = read("compose/setup.sh");
    for want in [
        "tongban certs init",
        "tongban certs issue server",
        "tongban certs issue client",
        "tongban certs signing-key",
        "tongban policy apply",
    ] {
        assert!(setup.contains(want), "setup.sh does not run `{want}`");
    }
    for n in &compose.needed {
        let stem = Path::new(n)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(setup.contains(&stem), "setup.sh never makes {n}");
    }
}

#[test]
fn compose_agreements_and_data_fit_the_config() {
    let p = Parsed::new(
        "compose config",
        &read("config/compose.toml"),
        &Env::default(),
    );
    let catalogue = gateway::policy_sync::catalogue(&p.config);
    let path = deploy_dir().join("compose/agreements.toml");
    let file = policy::AgreementFile::parse(&path, &read("compose/agreements.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    file.check(&catalogue).unwrap_or_else(|e| panic!("{e}"));
    let setup = read("compose/setup.sh");
    for a in &file.agreements {
        assert!(
            a.consumer.starts_with("role:") || setup.contains(&a.consumer),
            "agreement {} names {}, which setup.sh issues no certificate for",
            a.id,
            a.consumer
        );
    }
    // The demo records' identifiers are valid, or every lookup of them would be 400.
    let sql = read("compose/departments.sql");
    let mut table = "";
    let mut checked = 0;
    for line in sql.lines() {
        if let Some(rest) = line.strip_prefix("INSERT INTO ") {
            table = rest.split_whitespace().next().unwrap_or_default();
            continue;
        }
        let Some(row) = line.strip_prefix("('") else {
            continue;
        };
        let values: Vec<&str> = row.split('\'').step_by(2).collect();
        match table {
            "residents" => connectors::ids::check_resident_id(values[0]),
            "legal_persons" => connectors::ids::check_credit_code(values[0])
                .and_then(|()| connectors::ids::check_resident_id(values[4])),
            other => panic!("departments.sql: rows of unknown table {other}"),
        }
        .unwrap_or_else(|e| panic!("departments.sql: {line}: {e}"));
        checked += 1;
    }
    assert!(checked >= 5, "departments.sql: {checked} rows");
}

/// Every manifest in deploy/k8s, by kind.
fn k8s() -> BTreeMap<String, Vec<Yaml>> {
    let mut found = Vec::new();
    files(&deploy_dir().join("k8s"), &[".yaml", ".yml"], &mut found);
    let mut by_kind: BTreeMap<String, Vec<Yaml>> = BTreeMap::new();
    for f in &found {
        for d in yaml(f) {
            let kind = str_of(&d["kind"], &format!("{f}: kind")).to_owned();
            by_kind.entry(kind).or_default().push(d);
        }
    }
    by_kind
}

fn labels(y: &Yaml) -> BTreeMap<String, String> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (str_of(k, "label").to_owned(), str_of(v, "label").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_run_replicas_with_probes_and_a_budget() {
    let by_kind = k8s();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "Kustomization",
    ] {
        assert!(by_kind.contains_key(kind), "deploy/k8s has no {kind}");
    }
    let mut manifests = Vec::new();
    files(&deploy_dir().join("k8s"), &[".yaml"], &mut manifests);
    let kustomization = &by_kind["Kustomization"][0];
    let listed: BTreeSet<String> = list(&kustomization["resources"])
        .iter()
        .map(|r| format!("k8s/{}", str_of(r, "resource")))
        .collect();
    for m in manifests
        .iter()
        .filter(|m| !m.ends_with("kustomization.yaml"))
    {
        assert!(listed.contains(m), "kustomization.yaml does not list {m}");
    }

    let deployment = &by_kind["Deployment"][0];
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    assert!(replicas >= 2, "replicas: {replicas}");
    let pod = &deployment["spec"]["template"];
    let pod_labels = labels(&pod["metadata"]["labels"]);
    assert!(selects(
        &labels(&deployment["spec"]["selector"]["matchLabels"]),
        &pod_labels
    ));
    let spec = &pod["spec"];
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    assert!(spec["securityContext"]["runAsUser"].as_i64().unwrap_or(0) > 0);
    let container = &list(&spec["containers"])[0];
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert!(
        list(&sc["capabilities"]["drop"])
            .iter()
            .any(|c| c.as_str() == Some("ALL")),
        "capabilities: drop ALL"
    );

    // The config: the ConfigMap's, mounted where the container's args say, with every
    // TONGBAN_* variable naming a real setting.
    let config_map = &by_kind["ConfigMap"][0];
    let config_name = str_of(&config_map["metadata"]["name"], "ConfigMap name");
    let text = str_of(
        &config_map["data"]["tongban.toml"],
        "ConfigMap tongban.toml",
    );
    let args: Vec<String> = list(&container["args"])
        .iter()
        .filter_map(Yaml::as_str)
        .map(str::to_owned)
        .collect();
    let config_path = args
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("args: serve --config FILE")
        .clone();
    let env: Vec<(String, String)> = list(&container["env"])
        .iter()
        .map(|e| {
            let name = str_of(&e["name"], "env name").to_owned();
            // The values come from the cluster; any well-formed value will do here.
            let value = if name.ends_with("_DB") || name.ends_with("_URL") {
                "postgres://user:secret@db.example:5432/db".to_owned()
            } else {
                "value".to_owned()
            };
            (name, value)
        })
        .collect();
    let p = Parsed::new(
        "k8s ConfigMap tongban.toml",
        text,
        &Env::from_pairs(env.clone()),
    );
    let volumes = list(&spec["volumes"]);
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .cloned()
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mounts = list(&container["volumeMounts"]);
    let config_mount = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(config_path.as_str()))
        .unwrap_or_else(|| panic!("nothing mounted at {config_path}"));
    assert_eq!(
        volume(str_of(&config_mount["name"], "mount name"))["configMap"]["name"].as_str(),
        Some(config_name)
    );

    // Every file the config names comes from a Secret mounted at its directory, under
    // that name; the deployment guide says how to create each Secret with `tongban certs`.
    let readme = std::fs::read_to_string(deploy_dir().join("../docs/deployment.md")).unwrap();
    for n in &p.needed {
        let (dir, file) = n.rsplit_once('/').unwrap();
        let m = mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(dir))
            .unwrap_or_else(|| panic!("the config reads {n}; nothing is mounted at {dir}"));
        let v = volume(str_of(&m["name"], "mount name"));
        let secret = str_of(&v["secret"]["secretName"], "secretName");
        assert!(
            list(&v["secret"]["items"])
                .iter()
                .any(|i| i["path"].as_str() == Some(file)),
            "secret {secret} mounted at {dir} does not provide {file}"
        );
        assert!(
            readme.contains(secret) && readme.contains(file),
            "docs/deployment.md does not say how to create secret {secret} with {file}"
        );
    }
    for e in list(&container["env"]) {
        let r = &e["valueFrom"]["secretKeyRef"];
        if let (Some(name), Some(key)) = (r["name"].as_str(), r["key"].as_str()) {
            assert!(
                readme.contains(name) && readme.contains(key),
                "docs/deployment.md does not say how to create secret {name} key {key}"
            );
        }
    }
    for w in p.writes() {
        assert!(
            mounts.iter().any(|m| m["readOnly"].as_bool() != Some(true)
                && under(&w, m["mountPath"].as_str().unwrap_or("/"))),
            "the config writes {w}, on the read-only root file system"
        );
    }

    // Probes on the ops port the config listens on: readiness /readyz, liveness /healthz.
    let ports: BTreeMap<String, i64> = list(&container["ports"])
        .iter()
        .map(|p| {
            (
                str_of(&p["name"], "port name").to_owned(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        let port = match &get["port"] {
            Yaml::String(name) => ports[name],
            Yaml::Integer(n) => *n,
            other => panic!("{probe} port {other:?}"),
        };
        assert_eq!(
            port,
            i64::from(p.config.ops_listen.port()),
            "{probe} is not on the ops port"
        );
    }
    assert!(ports
        .values()
        .any(|v| *v == i64::from(p.config.listen.port())));

    // Services and the budget select the pods.
    for s in &by_kind["Service"] {
        assert!(
            selects(&labels(&s["spec"]["selector"]), &pod_labels),
            "Service selector"
        );
    }
    let pdb = &by_kind["PodDisruptionBudget"][0];
    assert!(selects(
        &labels(&pdb["spec"]["selector"]["matchLabels"]),
        &pod_labels
    ));
    let min = pdb["spec"]["minAvailable"].as_i64();
    assert!(
        min.is_some_and(|m| m >= 1 && m < replicas) || !pdb["spec"]["maxUnavailable"].is_badvalue(),
        "the budget must leave a replica serving and let one go"
    );
    assert!(
        by_kind["Service"].iter().any(|s| list(&s["spec"]["ports"])
            .iter()
            .any(|p| p["targetPort"].as_str() == Some("counter"))),
        "no Service for the counter port"
    );
}

/// `key=value` lines of a unit file, by section; a key may repeat.
fn unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("tongban.service: not key=value: {line}"));
        out.entry(section.clone())
            .or_default()
            .push((k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

#[test]
fn systemd_unit_is_hardened() {
    let u = unit(&read("systemd/tongban.service"));
    let service = &u["Service"];
    let all = |k: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |k: &str| -> &str {
        all(k)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("tongban.service: no {k}="))
    };
    for (k, v) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(one(k), v, "tongban.service: {k}");
    }
    assert!(one("ExecReload").contains("kill -HUP $MAINPID"));
    assert!(all("SystemCallFilter").contains(&"@system-service"));
    let families: Vec<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert!(families.contains(&"AF_INET") && families.contains(&"AF_INET6"));
    assert!(!families
        .iter()
        .any(|f| ["AF_PACKET", "AF_NETLINK"].contains(f)));
    assert!(one("EnvironmentFile").contains("/etc/tongban/"));
    assert!(
        all("DynamicUser").contains(&"yes") || all("User").iter().any(|u| *u != "root"),
        "tongban.service runs as root"
    );
    assert!(u["Install"].iter().any(|(k, _)| k == "WantedBy"));

    // The config it runs, deploy/config/tongban.toml, writes only where it may, and the
    // variables of the example environment file name real settings.
    let exec = one("ExecStart");
    assert!(
        exec.contains(" serve --config /etc/tongban/tongban.toml"),
        "{exec}"
    );
    let env: Vec<(String, String)> = read("systemd/tongban.env")
        .lines()
        .map(|l| l.trim_start_matches(['#', ' ']))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| {
            k.starts_with("TONGBAN_")
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(!env.is_empty());
    let p = Parsed::new(
        "config/tongban.toml with systemd/tongban.env",
        &read("config/tongban.toml"),
        &Env::from_pairs(env),
    );
    let writable: Vec<&str> = all("ReadWritePaths")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .chain(all("StateDirectory").iter().map(|_| "/var/lib/tongban"))
        .collect();
    for w in p.writes() {
        assert!(
            writable.iter().any(|d| under(&w, d)),
            "the config writes {w}; ProtectSystem=strict leaves it read-only"
        );
    }
}

#[test]
fn the_image_is_built_in_stages_and_runs_as_a_user() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let stages = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "Dockerfile: {stages} stage(s)");
    assert!(text.contains("cargo build --release") && text.contains("-p gateway"));
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("Dockerfile: USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    assert!(
        !lines.iter().any(|l| l.to_lowercase().contains("openssl")),
        "no OpenSSL in the image"
    );
    let expose = lines
        .iter()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    let p = Parsed::new(
        "compose config",
        &read("config/compose.toml"),
        &Env::default(),
    );
    for port in [p.config.listen.port(), p.config.ops_listen.port()] {
        assert!(
            expose.split_whitespace().any(|e| e == port.to_string()),
            "EXPOSE {expose}: missing {port}"
        );
    }
}

#[test]
fn the_deployment_guide_documents_each_deployment() {
    // The guide moved from the README to docs/deployment.md (issue 13).
    let section = std::fs::read_to_string(deploy_dir().join("../docs/deployment.md")).unwrap();
    for sub in ["## Docker Compose", "## Kubernetes", "## systemd"] {
        assert!(section.contains(sub), "docs/deployment.md: no {sub}");
    }
    for file in [
        "deploy/compose.yaml",
        "deploy/k8s",
        "deploy/systemd/tongban.service",
    ] {
        assert!(
            section.contains(file),
            "docs/deployment.md does not mention {file}"
        );
    }
}

/// Shell words of one command line: whitespace-separated, double quotes grouping.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// The `tongban …` commands of setup.sh, its variables and `client NAME ID` calls
/// expanded, continuation lines joined.
fn setup_commands(script: &str, vars: &BTreeMap<&str, String>) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines().map(str::trim) {
        let command = if let Some(rest) = line.strip_prefix("client ") {
            let args = words(rest);
            format!(
                "tongban certs issue client --ca-dir \"$CA\" --out \"$CLIENTS\" --name {} --identity {}",
                args[0], args[1]
            )
        } else if let Some(i) = line.find("tongban ") {
            if line.starts_with('#') || line.contains("$1") {
                continue;
            }
            line[i..].to_owned()
        } else {
            continue;
        };
        let mut command = command;
        for (k, v) in vars {
            command = command.replace(&format!("${k}"), v);
        }
        out.push(words(&command));
    }
    out
}

#[tokio::test]
async fn setup_sh_makes_what_the_compose_gateways_need() {
    gateway::install_crypto_provider();
    let root = tempfile::tempdir().unwrap();
    let base = root.path().display().to_string();
    let vars: BTreeMap<&str, String> = [
        ("CA", format!("{base}/ca")),
        ("PKI", format!("{base}/etc/tongban/pki")),
        ("KEYS", format!("{base}/etc/tongban/keys")),
        ("CLIENTS", format!("{base}/clients")),
        ("CONFIG", format!("{base}/etc/tongban/tongban.toml")),
    ]
    .into_iter()
    .collect();
    let script = read("compose/setup.sh");
    let commands = setup_commands(&script, &vars);
    let certs: Vec<&Vec<String>> = commands.iter().filter(|c| c[1] == "certs").collect();
    assert!(certs.len() >= 7, "{commands:?}");
    for argv in certs {
        use clap::Parser as _;
        let cli = gateway::cli::Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("setup.sh: {}: {e}", argv.join(" ")));
        gateway::cli::run(cli)
            .await
            .unwrap_or_else(|e| panic!("setup.sh: {}: {e}", argv.join(" ")));
    }
    // setup.sh's `cp` of the CA and CRL.
    for f in ["ca.pem", "crl.pem"] {
        std::fs::copy(
            root.path().join("ca").join(f),
            root.path().join("etc/tongban/pki").join(f),
        )
        .unwrap();
    }
    // The compose config finds every file it names, and they make a TLS server and a
    // signer.
    let mut text = read("config/compose.toml");
    for prefix in ["/etc/tongban/", "/var/lib/tongban/"] {
        text = text.replace(&format!("\"{prefix}"), &format!("\"{base}{prefix}"));
    }
    let config = Config::parse_with(
        &root.path().join("etc/tongban/tongban.toml"),
        &text,
        &Env::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    certs::server_trust(&config.tls.files()).unwrap_or_else(|e| panic!("{e}"));
    audit::signing::Signer::load(&config.signing_key).unwrap_or_else(|e| panic!("{e}"));
    // A key is never overwritten by accident: exit 2 without --force.
    {
        use clap::Parser as _;
        let key = config.signing_key.display().to_string();
        let argv = ["tongban", "certs", "signing-key", "--out", key.as_str()];
        let again = gateway::cli::run(gateway::cli::Cli::try_parse_from(argv).unwrap()).await;
        assert_eq!(again.err().map(|f| f.code()), Some(2));
    }
    for name in ["counter-a", "counter-b", "admin", "auditor"] {
        assert!(
            root.path().join(format!("clients/{name}.pem")).is_file(),
            "{name}"
        );
    }
    assert!(
        commands
            .iter()
            .any(|c| c[1..3] == ["policy".to_owned(), "apply".to_owned()]),
        "setup.sh applies the agreements"
    );
}
