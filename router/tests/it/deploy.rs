//! deploy/ as an SRE would check it before trusting it: every config shipped there validates
//! with the binary (with the files its Secrets or its host would hold, made here), and the
//! container image, the Kubernetes manifests and the systemd unit agree with those configs:
//! ports, probes, mounts, grace periods, writable paths. The external validators (hadolint,
//! kubernetes-validate, systemd-analyze) run in scripts/check-deploy.sh.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use residency_config::testing::Ca;
use serde_yaml::Value;

use crate::common::{free_port, router_command, wait_for_port};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[track_caller]
fn validates(config: &Path) {
    let out = router_command()
        .args(["validate", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} does not validate:\n{}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `files` (path relative to `root`, contents) under `root`.
fn lay_out(root: &Path, files: &[(String, Vec<u8>)]) {
    for (path, contents) in files {
        let path = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

/// What a certificate Secret, a tokens Secret and an etcd client Secret would hold: real
/// PEM files and a tokens file, in the file names given.
struct SecretFiles {
    ca: Ca,
}

impl SecretFiles {
    fn new() -> SecretFiles {
        SecretFiles {
            ca: Ca::new("deploy test CA"),
        }
    }

    fn certificate(&self, cert: &str, key: &str) -> Vec<(String, Vec<u8>)> {
        let leaf = self.ca.issue(&[
            "*.app.example.com",
            "us.api.example.com",
            "eu.api.example.com",
        ]);
        vec![
            (cert.to_owned(), leaf.cert_pem.into_bytes()),
            (key.to_owned(), leaf.key_pem.into_bytes()),
        ]
    }

    fn etcd_client(&self, ca: &str, cert: &str, key: &str) -> Vec<(String, Vec<u8>)> {
        let mut files = self.certificate(cert, key);
        files.push((ca.to_owned(), self.ca.pem().into_bytes()));
        files
    }

    fn tokens(path: &str) -> Vec<(String, Vec<u8>)> {
        let hash = residency_admin::auth::token_hash("deploy-test-operator");
        let toml =
            format!("[[tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{hash}\"\n");
        vec![(path.to_owned(), toml.into_bytes())]
    }
}

fn toml_of(text: &str) -> toml::Table {
    text.parse().expect("TOML")
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>().expect("ip:port").port()
}

/// `[listen]`'s addresses by name.
fn listeners(config: &toml::Table) -> BTreeMap<String, String> {
    config["listen"]
        .as_table()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

fn shutdown_grace(config: &toml::Table) -> i64 {
    config
        .get("server")
        .and_then(|s| s.get("shutdown_grace_seconds"))
        .map_or(10, |v| v.as_integer().unwrap())
}

// ---- the container image -------------------------------------------------------------------

/// One Dockerfile instruction: its name (upper case) and its arguments.
type Step = (String, String);

/// Dockerfile instructions, continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<Step> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|i| {
            let (word, rest) = i.split_once(' ').unwrap_or((&i, ""));
            (word.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

/// The build stage and the runtime stage: before and from the second FROM.
fn stages(steps: &[Step]) -> (&[Step], &[Step]) {
    let second_from = steps
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .nth(1)
        .map_or(steps.len(), |(n, _)| n);
    steps.split_at(second_from)
}

/// A build-stage RUN makes `path` with `install` (`-d`: a directory): it is its last argument.
fn made_by_install(build: &[Step], path: &str, directory: bool) -> bool {
    build.iter().filter(|(i, _)| i == "RUN").any(|(_, run)| {
        run.split("&&").any(|command| {
            let words: Vec<&str> = command.split_whitespace().collect();
            words.first() == Some(&"install")
                && words.last() == Some(&path)
                && (!directory || words.contains(&"-d"))
        })
    })
}

/// The directories the running image's user may write: those copied in with
/// `--chown=65532:...`, and /tmp (the base image's).
fn writable_in_image(runtime: &[Step]) -> Vec<String> {
    let mut writable = vec!["/tmp".to_owned()];
    for (_, args) in runtime.iter().filter(|(i, _)| i == "COPY") {
        let (flags, _, dest) = copy_parts(args);
        if flags.iter().any(|f| f.starts_with("--chown=65532")) {
            writable.push(dest.trim_end_matches('/').to_owned());
        }
    }
    writable
}

/// A COPY's flags, sources and destination.
fn copy_parts(args: &str) -> (Vec<&str>, Vec<&str>, &str) {
    let words: Vec<&str> = args.split_whitespace().collect();
    let (flags, paths): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.starts_with("--"));
    let (dest, sources) = paths.split_last().expect("COPY names a destination");
    (flags, sources.to_vec(), dest)
}

fn excluded_by_dockerignore(path: &str, ignore: &str) -> bool {
    ignore
        .lines()
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with('#'))
        .any(|pattern| match pattern.strip_prefix("**/*") {
            Some(suffix) => path.ends_with(suffix),
            None => path == pattern || path.starts_with(&format!("{pattern}/")),
        })
}

fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|_| panic!("not the exec form: {args}"))
}

#[test]
fn the_container_image_is_pinned_non_root_and_copies_only_what_exists() {
    let dockerfile = read("deploy/container/Dockerfile");
    let ignore = read(".dockerignore");
    let steps = instructions(&dockerfile);
    let (build, _) = stages(&steps);
    let mut from = 0;
    for (instruction, args) in &steps {
        match instruction.as_str() {
            "FROM" => {
                from += 1;
                let image = args.split_whitespace().next().unwrap();
                let tag = image.rsplit('/').next().unwrap();
                assert!(
                    image.contains("@sha256:")
                        || tag.split_once(':').is_some_and(|(_, t)| t != "latest"),
                    "base image not pinned by tag or digest: {image}"
                );
            }
            "COPY" | "ADD" => {
                assert_eq!(instruction, "COPY", "ADD fetches and unpacks: use COPY");
                let (flags, sources, _) = copy_parts(args);
                for source in sources {
                    if flags.iter().any(|f| f.starts_with("--from=")) {
                        assert!(
                            made_by_install(build, source, false),
                            "{source} is copied from the build stage, which never makes it"
                        );
                    } else if source != "." {
                        assert!(repo().join(source).exists(), "COPY {source}: no such file");
                        assert!(
                            !excluded_by_dockerignore(source, &ignore),
                            "COPY {source}: excluded from the build context by .dockerignore"
                        );
                    }
                }
            }
            "ENV" | "ARG" => {
                let upper = args.to_uppercase();
                for word in ["PASSWORD", "SECRET", "TOKEN", "PRIVATE"] {
                    assert!(
                        !upper.contains(word),
                        "{instruction} {args}: no secrets in the image"
                    );
                }
            }
            _ => {}
        }
    }
    assert_eq!(from, 2, "a build stage and a runtime stage");
    for must_not_ship in ["target", ".git", "load-tests/results"] {
        assert!(
            excluded_by_dockerignore(must_not_ship, &ignore),
            "{must_not_ship} is sent to the build"
        );
    }
    let last = |name: &str| {
        steps
            .iter()
            .rev()
            .find(|(i, _)| i == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let user = last("USER");
    assert!(
        !["root", "0", "0:0", "root:root"].contains(&user.as_str()),
        "runs as root: USER {user}"
    );
    assert_eq!(last("STOPSIGNAL"), "SIGTERM", "SIGTERM drains");
    let entrypoint = exec_form(&last("ENTRYPOINT"));
    let cmd = exec_form(&last("CMD"));
    assert_eq!(entrypoint, ["/usr/local/bin/residency-router"]);
    assert_eq!(
        cmd,
        ["run", "--config", "/etc/residency-router/router.toml"]
    );
}

#[tokio::test]
async fn the_image_s_config_validates_and_its_healthcheck_passes_against_a_router_running_it() {
    let dockerfile = read("deploy/container/Dockerfile");
    let steps = instructions(&dockerfile);
    let root = tempfile::tempdir().unwrap();
    // The runtime stage's files from this repository, where the image puts them, and /tmp.
    let (build, runtime) = stages(&steps);
    std::fs::create_dir_all(root.path().join("tmp")).unwrap();
    for (_, args) in runtime.iter().filter(|(i, _)| i == "COPY") {
        let (flags, sources, dest) = copy_parts(args);
        if flags.iter().any(|f| f.starts_with("--from=")) {
            continue;
        }
        let dest = root.path().join(dest.trim_start_matches('/'));
        std::fs::create_dir_all(&dest).unwrap();
        for source in sources {
            let name = Path::new(source).file_name().unwrap();
            std::fs::copy(repo().join(source), dest.join(name)).unwrap();
        }
    }
    let config_path = root.path().join("etc/residency-router/router.toml");
    validates(&config_path);

    let text = std::fs::read_to_string(&config_path).unwrap();
    let config = toml_of(&text);
    // What the router writes, the image's user may write: the registry (rewritten by the
    // admin API), the audit log, the upgrade socket.
    let writable = writable_in_image(runtime);
    let config_dir = "/etc/residency-router";
    let registry = format!(
        "{config_dir}/{}",
        config["tenancy"]["registry"].as_str().unwrap()
    );
    for path in [
        registry.as_str(),
        config["admin"]["audit_log"].as_str().unwrap(),
        config["server"]["upgrade_socket"].as_str().unwrap(),
    ] {
        let dir = Path::new(path).parent().unwrap().to_str().unwrap();
        assert!(
            writable.iter().any(|w| w == dir),
            "{path}: {dir} is not writable in the image ({writable:?})"
        );
        let made = dir == "/tmp"
            || dir == config_dir
            || runtime.iter().filter(|(i, _)| i == "COPY").any(|(_, a)| {
                let (flags, sources, dest) = copy_parts(a);
                dest.trim_end_matches('/') == dir
                    && flags.iter().any(|f| f.starts_with("--from="))
                    && sources.iter().all(|s| made_by_install(build, s, true))
            });
        assert!(made, "{dir}: the build stage never makes it");
    }
    let exposed: Vec<u16> = steps
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, a)| a.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    for (name, addr) in listeners(&config) {
        let addr: SocketAddr = addr.parse().unwrap();
        assert!(
            addr.ip().is_loopback() || exposed.contains(&addr.port()),
            "listen.{name} ({addr}) is not in EXPOSE {exposed:?}"
        );
    }

    // Run it as the image would, on free loopback ports, with the image's writable paths
    // under the temporary root; then run the HEALTHCHECK command.
    let healthcheck = steps
        .iter()
        .find(|(i, _)| i == "HEALTHCHECK")
        .map(|(_, a)| a.clone())
        .expect("a HEALTHCHECK");
    let command = exec_form(healthcheck.split_once("CMD ").expect("HEALTHCHECK CMD").1);
    assert_eq!(command[0], "/usr/local/bin/residency-router");
    let admin = listeners(&config)["admin"].clone();
    assert!(
        command.iter().any(|a| a.contains(&admin)),
        "the HEALTHCHECK probes listen.admin: {command:?}"
    );
    let mut running = text.clone();
    for addr in listeners(&config).values() {
        running = running.replace(addr, &free_port().to_string());
    }
    let new_admin = listeners(&toml_of(&running))["admin"].clone();
    // /tmp first: the temporary root itself is under /tmp.
    for writable in ["/tmp/", "/var/lib/residency-router"] {
        let inside = format!(
            "{}/{}",
            root.path().display(),
            writable.trim_start_matches('/')
        );
        running = running.replace(&format!("\"{writable}"), &format!("\"{inside}"));
    }
    std::fs::write(&config_path, running).unwrap();
    let mut router = router_command()
        .args(["run", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin_addr: SocketAddr = new_admin.parse().unwrap();
    let started = tokio::task::spawn_blocking(move || wait_for_port(admin_addr));
    started.await.unwrap();
    let probe = command[1..].iter().map(|a| a.replace(&admin, &new_admin));
    let checked = router_command().args(probe).output().unwrap();
    let _ = router.kill();
    let _ = router.wait();
    assert!(
        checked.status.success(),
        "HEALTHCHECK failed: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

// ---- Kubernetes ----------------------------------------------------------------------------

/// The pinned kubectl scripts/check-deploy.sh installs (scripts/prereqs.sh), else the one on
/// the PATH.
fn kubectl() -> Command {
    let pinned = repo().join("target/deploy-venv/bin/kubectl");
    Command::new(if pinned.exists() {
        pinned
    } else {
        PathBuf::from("kubectl")
    })
}

fn kustomize(overlay: &str) -> Vec<Value> {
    let dir = repo().join("deploy/kubernetes/overlays").join(overlay);
    let out = kubectl()
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl: {e}; scripts/test.sh installs it (or see docs/deploy.md)")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

fn overlays() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("deploy/kubernetes/overlays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(objects, kind)
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn str_of(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn int_of(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("not an integer: {value:?}"))
}

/// Kubernetes quantities of CPU, in millicores.
fn millicores(value: &Value) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap() * 1000,
        other => {
            let s = str_of(other);
            s.strip_suffix('m')
                .map_or_else(|| s.parse::<i64>().unwrap() * 1000, |m| m.parse().unwrap())
        }
    }
}

/// What the kubelet would put at each mount of the router's container: the ConfigMap's keys,
/// and for each Secret the files the configuration names.
fn pod_files(objects: &[Value], container: &Value, pod: &Value) -> Vec<(String, Vec<u8>)> {
    let secrets = SecretFiles::new();
    let mut files = Vec::new();
    for mount in container["volumeMounts"].as_sequence().unwrap() {
        assert!(
            mount.get("subPath").is_none(),
            "subPath mounts never see updates: {mount:?}"
        );
        let at = str_of(&mount["mountPath"]);
        let volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        if let Some(map) = volume.get("configMap") {
            let config_map = named(objects, "ConfigMap", str_of(&map["name"]));
            for (key, value) in config_map["data"].as_mapping().unwrap() {
                files.push((
                    format!("{at}/{}", str_of(key)),
                    str_of(value).as_bytes().to_vec(),
                ));
            }
        } else if let Some(secret) = volume.get("secret") {
            let name = str_of(&secret["secretName"]);
            files.extend(match name {
                // type kubernetes.io/tls
                "residency-router-tls" => {
                    secrets.certificate(&format!("{at}/tls.crt"), &format!("{at}/tls.key"))
                }
                "residency-router-admin-tokens" => {
                    SecretFiles::tokens(&format!("{at}/tokens.toml"))
                }
                // cert-manager's layout
                "residency-router-etcd-client" => secrets.etcd_client(
                    &format!("{at}/ca.crt"),
                    &format!("{at}/tls.crt"),
                    &format!("{at}/tls.key"),
                ),
                other => panic!("docs/deploy.md does not say how to make the Secret {other}"),
            });
        }
    }
    files
}

#[test]
fn every_region_s_manifests_agree_with_its_config_and_the_config_validates() {
    let regions = overlays();
    assert_eq!(regions, ["eu", "us"]);
    for region in &regions {
        let objects = kustomize(region);
        let deployment = named(&objects, "Deployment", "residency-router");
        let spec = &deployment["spec"];
        let pod = &spec["template"]["spec"];
        let container = &pod["containers"][0];
        assert!(
            int_of(&spec["replicas"]) >= 2,
            "{region}: one router is no fleet"
        );

        // The config the pods run, with what its Secrets would hold, validates.
        let root = tempfile::tempdir().unwrap();
        lay_out(root.path(), &pod_files(&objects, container, pod));
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
        let config_at = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
        let config_path = root.path().join(config_at.trim_start_matches('/'));
        validates(&config_path);
        let config = toml_of(&std::fs::read_to_string(&config_path).unwrap());

        // Its listeners are the container's ports, by name.
        let ports: BTreeMap<&str, i64> = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| (str_of(&p["name"]), int_of(&p["containerPort"])))
            .collect();
        let listen = listeners(&config);
        for (name, addr) in &listen {
            assert_eq!(
                ports.get(name.as_str()).copied(),
                Some(i64::from(port_of(addr))),
                "{region}: listen.{name} = {addr} and the container's ports {ports:?}"
            );
            assert!(
                addr.starts_with("0.0.0.0:"),
                "{region}: listen.{name} unreachable in a pod"
            );
        }
        // Probes on the admin API's endpoints.
        for (probe, path) in [
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(str_of(&get["path"]), path, "{region}: {probe}");
            assert_eq!(str_of(&get["port"]), "admin", "{region}: {probe}");
        }
        // Startup: at least 2 minutes for a million tenants on a busy node.
        let startup = &container["startupProbe"];
        assert!(int_of(&startup["periodSeconds"]) * int_of(&startup["failureThreshold"]) >= 120);
        // SIGTERM comes after the preStop sleep; the drain must end before the SIGKILL.
        let pre_stop = int_of(&container["lifecycle"]["preStop"]["sleep"]["seconds"]);
        assert!(
            int_of(&pod["terminationGracePeriodSeconds"]) >= pre_stop + shutdown_grace(&config) + 2,
            "{region}: terminationGracePeriodSeconds below preStop + shutdown_grace_seconds + 2"
        );
        // Locked down.
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["capabilities"]["drop"][0], "ALL");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        // Resources, and worker threads within the CPU limit.
        let resources = &container["resources"];
        for bound in ["requests", "limits"] {
            assert!(
                resources[bound]["cpu"].as_str().is_some() || resources[bound]["cpu"].is_number()
            );
            assert!(
                resources[bound]["memory"].as_str().is_some(),
                "{region}: {bound}.memory"
            );
        }
        let threads = config["server"]["threads"]
            .as_integer()
            .expect("server.threads set");
        assert!(
            threads * 1000 <= millicores(&resources["limits"]["cpu"]),
            "{region}: threads"
        );
        // Spread over zones and nodes.
        let spread = pod["topologySpreadConstraints"].as_sequence().unwrap();
        assert!(spread
            .iter()
            .any(|c| c["topologyKey"] == "topology.kubernetes.io/zone"));
        assert!(pod["affinity"]["podAntiAffinity"].is_mapping());
        // The files the router writes are on writable volumes.
        let writable: Vec<&str> = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|m| m["readOnly"] != true)
            .map(|m| str_of(&m["mountPath"]))
            .collect();
        let etcd = &config["tenancy"]["registry"]["etcd"];
        for path in [
            etcd["cache"].as_str().unwrap(),
            config["admin"]["audit_log"].as_str().unwrap(),
        ] {
            assert!(
                writable.iter().any(|w| path.starts_with(&format!("{w}/"))),
                "{region}: {path} is not on a writable volume ({writable:?})"
            );
        }
        // This region's label, and its own etcd members first.
        assert_eq!(etcd["router_region"].as_str(), Some(region.as_str()));
        let first = etcd["endpoints"][0].as_str().unwrap();
        assert!(
            first.contains(&format!("-{region}-")),
            "{region}: first etcd member {first}"
        );

        // Client traffic only on the load balancer; admin and metrics inside the cluster.
        let client = named(&objects, "Service", "residency-router");
        let targets: Vec<&str> = client["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| str_of(&p["targetPort"]))
            .collect();
        assert_eq!(targets, ["http", "https"], "{region}: the client Service");
        for name in ["residency-router-admin", "residency-router-metrics"] {
            assert_eq!(
                named(&objects, "Service", name)["spec"]["type"],
                "ClusterIP"
            );
        }
        // The admin port only for labelled operator pods (any namespace), metrics only for
        // the monitoring namespace, the client ports for everyone.
        let policy = named(&objects, "NetworkPolicy", "residency-router");
        let rules = policy["spec"]["ingress"].as_sequence().unwrap();
        let rule_for = |port: &str| {
            rules
                .iter()
                .find(|r| {
                    r["ports"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .any(|p| p["port"] == port)
                })
                .unwrap_or_else(|| panic!("{region}: no ingress rule for {port}"))
        };
        for port in ["http", "https"] {
            assert!(
                rule_for(port).get("from").is_none(),
                "{region}: {port} from anywhere"
            );
        }
        let admin_from = serde_yaml::to_string(&rule_for("admin")["from"]).unwrap();
        assert_eq!(
            admin_from,
            "- namespaceSelector: {}\n  podSelector:\n    matchLabels:\n      residency-router/admin-client: 'true'\n",
            "{region}: who may call the admin API"
        );
        assert_eq!(
            rule_for("metrics")["from"][0]["namespaceSelector"]["matchLabels"]
                ["kubernetes.io/metadata.name"],
            "monitoring"
        );
        // Each router says its region, on the pod (and so on its metrics, by relabelling).
        assert_eq!(
            spec["template"]["metadata"]["labels"]["residency.example.com/router-region"],
            region.as_str()
        );
        let pdb = named(&objects, "PodDisruptionBudget", "residency-router");
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        // The ConfigMap is updated in place (no name hash), so the pods reload it live.
        let config_map = of_kind(&objects, "ConfigMap");
        assert_eq!(config_map.len(), 1);
        assert_eq!(config_map[0]["metadata"]["name"], "residency-router-config");
    }
}

// ---- systemd -------------------------------------------------------------------------------

/// A unit file's `[Service]` settings, in order (a key may repeat).
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.is_empty() && !line.starts_with('#') {
            let (key, value) = line.split_once('=').expect("key=value");
            settings.push((key.to_owned(), value.to_owned()));
        }
    }
    settings
}

#[test]
fn the_systemd_unit_runs_its_config_with_room_to_drain_and_to_write() {
    let unit = read("deploy/systemd/residency-router.service");
    let settings = service_settings(&unit);
    let one = |key: &str| {
        let values: Vec<&str> = settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(values.len(), 1, "{key}: {values:?}");
        values[0].to_owned()
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(
        one("NotifyAccess"),
        "all",
        "the SIGUSR2 successor sends MAINPID"
    );
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("KillSignal"), "SIGTERM");
    let exec_start = one("ExecStart");
    let config_at = exec_start
        .split_whitespace()
        .skip_while(|w| *w != "--config")
        .nth(1)
        .unwrap();
    assert_eq!(config_at, "/etc/residency-router/router.toml");
    assert!(one("ExecStartPre").contains(&format!("validate --config {config_at}")));

    // deploy/systemd/router.toml validates with the files it names beside it.
    let text = read("deploy/systemd/router.toml");
    let config = toml_of(&text);
    let dir = tempfile::tempdir().unwrap();
    let secrets = SecretFiles::new();
    let etcd = &config["tenancy"]["registry"]["etcd"];
    let tls = &etcd["tls"];
    let certificate = &config["tls"]["certificates"][0];
    let mut files = secrets.certificate(
        certificate["cert"].as_str().unwrap(),
        certificate["key"].as_str().unwrap(),
    );
    files.extend(secrets.etcd_client(
        tls["ca"].as_str().unwrap(),
        tls["cert"].as_str().unwrap(),
        tls["key"].as_str().unwrap(),
    ));
    files.extend(SecretFiles::tokens(
        config["admin"]["tokens_file"].as_str().unwrap(),
    ));
    files.push(("router.toml".to_owned(), text.clone().into_bytes()));
    lay_out(dir.path(), &files);
    validates(&dir.path().join("router.toml"));

    // A stop waits for the drain; every path the router writes is the unit's to write.
    let stop = one("TimeoutStopSec").parse::<i64>().unwrap();
    assert!(stop >= shutdown_grace(&config) + 2, "TimeoutStopSec {stop}");
    let writable: Vec<String> = ["StateDirectory", "LogsDirectory", "RuntimeDirectory"]
        .iter()
        .zip(["/var/lib", "/var/log", "/run"])
        .map(|(key, base)| format!("{base}/{}/", one(key)))
        .collect();
    for path in [
        etcd["cache"].as_str().unwrap(),
        config["admin"]["audit_log"].as_str().unwrap(),
        config["access_log"]["path"].as_str().unwrap(),
        config["server"]["control_socket"].as_str().unwrap(),
        config["server"]["upgrade_socket"].as_str().unwrap(),
    ] {
        assert!(
            writable.iter().any(|w| path.starts_with(w.as_str())),
            "{path} is not under the unit's writable directories {writable:?}"
        );
    }
    for w in &writable {
        assert!(
            one("ReadWritePaths")
                .split_whitespace()
                .any(|p| w.starts_with(p)),
            "{w} not in ReadWritePaths"
        );
    }
    // Two descriptors a connection (client and backend).
    let max_connections = config
        .get("proxy")
        .and_then(|p| p.get("max_client_connections"))
        .map_or(10_000, |v| v.as_integer().unwrap());
    assert!(one("LimitNOFILE").parse::<i64>().unwrap() > 2 * max_connections);
    // Ports below 1024 need the capability, and nothing more.
    let low = listeners(&config).values().any(|a| port_of(a) < 1024);
    assert!(low, "the example serves 80 and 443");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
}
