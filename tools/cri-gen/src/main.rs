//! Generates netshim's Rust code for the Kubernetes CRI v1 API from the vendored
//! `proto/cri-api/v0.32.3/api.proto`, with protox (a pure-Rust protobuf compiler: no `protoc`)
//! and tonic-prost-build. Its output is committed, so the agent's build compiles neither.
//!
//! ```text
//! cargo run --locked --manifest-path tools/cri-gen/Cargo.toml            # rewrite the files
//! cargo run --locked --manifest-path tools/cri-gen/Cargo.toml -- --check # fail if they are stale
//! ```
//!
//! Two files come out, each holding only what its users need:
//! - `src/receivers/cri/generated/runtime.v1.rs`, for the agent: a `RuntimeService` client with
//!   the calls the `cri` receiver makes ([`AGENT_METHODS`]) and the messages and enums those
//!   calls reach, every field of them (so decoding is the runtime's own definition);
//! - `tests/support/cri_api/runtime.v1.rs`, for the tests: a client and a server (whose trait
//!   methods answer `UNIMPLEMENTED` unless the test's runtime overrides them) with the calls the
//!   tests make or serve ([`TEST_METHODS`]); messages the agent's file has are taken from it
//!   (`::netshim::receivers::cri::proto`), only the others are generated.
//!
//! tonic-prost-build generates every method of a service and every message of a file, so the
//! file descriptor protox returns is cut down first: the service to the chosen methods, the
//! messages and enums to those reachable from the methods' requests and responses (with the
//! source locations renumbered, so each item keeps its own comment).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use prost_types::{DescriptorProto, FileDescriptorSet};

/// The vendored definition, relative to the repository's root.
const PROTO_DIR: &str = "proto/cri-api/v0.32.3";
const PROTO_FILE: &str = "api.proto";
const PACKAGE: &str = "runtime.v1";
const SERVICE: &str = "RuntimeService";

/// The calls the agent makes (src/receivers/cri/client.rs).
const AGENT_METHODS: &[&str] = &[
    "Version",
    "ListPodSandbox",
    "PodSandboxStatus",
    "ListContainers",
    "GetContainerEvents",
];
const AGENT_OUT: &str = "src/receivers/cri/generated";
/// Where the agent's generated types are, for the tests' file.
const AGENT_RUST_PATH: &str = "::netshim::receivers::cri::proto";

/// The calls the tests make on a real containerd (tests/support/containerd.rs, cri_runtimes.rs)
/// or serve from their fake runtime (tests/support/fake_cri.rs).
const TEST_METHODS: &[&str] = &[
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "ListContainers",
    "GetContainerEvents",
];
const TEST_OUT: &str = "tests/support/cri_api";

/// The file prost-build writes for the package.
const OUT_FILE: &str = "runtime.v1.rs";

// Field numbers of descriptor.proto, for source locations.
const FILE_MESSAGE_TYPE: i32 = 4;
const FILE_ENUM_TYPE: i32 = 5;
const FILE_SERVICE: i32 = 6;
const SERVICE_METHOD: i32 = 2;

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("cri-gen: unknown argument `{other}` (only --check)");
            return ExitCode::from(2);
        }
    };
    match run(check) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cri-gen: {e}");
            ExitCode::from(2)
        }
    }
}

/// Generates both files; writes them, or (with `check`) says whether the committed ones match.
fn run(check: bool) -> Result<bool, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root
        .canonicalize()
        .map_err(|e| format!("repository root {}: {e}", root.display()))?;
    let full = protox::compile([PROTO_FILE], [root.join(PROTO_DIR)])
        .map_err(|e| format!("compiling {PROTO_DIR}/{PROTO_FILE}: {e:?}"))?;

    let scratch = std::env::temp_dir().join(format!("cri-gen-{}", std::process::id()));
    let result = generate(&root, &full, &scratch, check);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn generate(
    root: &Path,
    full: &FileDescriptorSet,
    scratch: &Path,
    check: bool,
) -> Result<bool, String> {
    let agent_dir = scratch.join("agent");
    let test_dir = scratch.join("test");
    for dir in [&agent_dir, &test_dir] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }

    let (agent_fds, agent_types) = cut(full, AGENT_METHODS)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .build_transport(false)
        .out_dir(&agent_dir)
        .compile_fds(agent_fds)
        .map_err(|e| format!("generating the agent's code: {e}"))?;

    let (test_fds, _) = cut(full, TEST_METHODS)?;
    let mut tests = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .generate_default_stubs(true)
        .out_dir(&test_dir);
    for name in &agent_types {
        tests = tests.extern_path(
            format!(".{PACKAGE}.{name}"),
            format!("{AGENT_RUST_PATH}::{name}"),
        );
    }
    tests
        .compile_fds(test_fds)
        .map_err(|e| format!("generating the tests' code: {e}"))?;

    let mut current = true;
    for (dir, out) in [(&agent_dir, AGENT_OUT), (&test_dir, TEST_OUT)] {
        let generated = std::fs::read_to_string(dir.join(OUT_FILE))
            .map_err(|e| format!("reading the generated {OUT_FILE}: {e}"))?;
        let text = format!(
            "// Generated by tools/cri-gen from {PROTO_DIR}/{PROTO_FILE}: do not edit.\n\
             // Regenerate: cargo run --locked --manifest-path tools/cri-gen/Cargo.toml\n{generated}"
        );
        let target: PathBuf = root.join(out).join(OUT_FILE);
        if check {
            let committed = std::fs::read_to_string(&target).unwrap_or_default();
            if committed != text {
                eprintln!(
                    "cri-gen: {out}/{OUT_FILE} is not what {PROTO_DIR}/{PROTO_FILE} generates; \
                     run: cargo run --locked --manifest-path tools/cri-gen/Cargo.toml"
                );
                current = false;
            }
        } else {
            std::fs::create_dir_all(root.join(out)).map_err(|e| format!("{out}: {e}"))?;
            std::fs::write(&target, text).map_err(|e| format!("{}: {e}", target.display()))?;
            println!("wrote {out}/{OUT_FILE}");
        }
    }
    if check && current {
        println!("cri-gen: the generated CRI code is current");
    }
    Ok(current)
}

/// `full` with the service cut to `methods` (which must all exist) and the top-level messages
/// and enums cut to those the methods reach; also returns the names kept.
fn cut(
    full: &FileDescriptorSet,
    methods: &[&str],
) -> Result<(FileDescriptorSet, BTreeSet<String>), String> {
    let mut fds = full.clone();
    fds.file.retain(|f| f.package() == PACKAGE);
    let [file] = fds.file.as_mut_slice() else {
        return Err(format!("expected one file of package {PACKAGE}"));
    };

    // The service, cut to the methods.
    let service_index = file
        .service
        .iter()
        .position(|s| s.name() == SERVICE)
        .ok_or_else(|| format!("no service {SERVICE}"))?;
    let service = &file.service[service_index];
    let method_keep: Vec<usize> = (0..service.method.len())
        .filter(|&i| methods.contains(&service.method[i].name()))
        .collect();
    for wanted in methods {
        if !service.method.iter().any(|m| m.name() == *wanted) {
            return Err(format!("{SERVICE} has no method {wanted}"));
        }
    }

    // Top-level types reached from the methods' requests and responses.
    let messages: BTreeMap<&str, &DescriptorProto> = file
        .message_type
        .iter()
        .map(|m| (m.name(), m))
        .collect();
    let prefix = format!(".{PACKAGE}.");
    let mut queue: Vec<String> = method_keep
        .iter()
        .flat_map(|&i| {
            let m = &service.method[i];
            [m.input_type().to_string(), m.output_type().to_string()]
        })
        .collect();
    let mut keep = BTreeSet::new();
    while let Some(type_name) = queue.pop() {
        let relative = type_name
            .strip_prefix(&prefix)
            .ok_or_else(|| format!("type {type_name} is outside {PACKAGE}"))?;
        let top = relative.split('.').next().unwrap_or(relative).to_string();
        if keep.insert(top.clone()) {
            if let Some(message) = messages.get(top.as_str()) {
                references(message, &mut queue);
            }
        }
    }

    let message_keep: Vec<usize> = (0..file.message_type.len())
        .filter(|&i| keep.contains(file.message_type[i].name()))
        .collect();
    let enum_keep: Vec<usize> = (0..file.enum_type.len())
        .filter(|&i| keep.contains(file.enum_type[i].name()))
        .collect();

    file.message_type = pick(&file.message_type, &message_keep);
    file.enum_type = pick(&file.enum_type, &enum_keep);
    let mut service = file.service[service_index].clone();
    service.method = pick(&service.method, &method_keep);
    file.service = vec![service];

    // Renumber the source locations (they carry the comments) to the items' new places.
    if let Some(info) = file.source_code_info.as_mut() {
        info.location.retain_mut(|location| {
            let path = &mut location.path;
            let (list, keep): (i32, &[usize]) = match path.first() {
                Some(&FILE_MESSAGE_TYPE) => (FILE_MESSAGE_TYPE, &message_keep),
                Some(&FILE_ENUM_TYPE) => (FILE_ENUM_TYPE, &enum_keep),
                Some(&FILE_SERVICE) => (FILE_SERVICE, &[service_index]),
                _ => return true,
            };
            let Some(new) = path.get(1).and_then(|&old| renumber(keep, old)) else {
                // The list itself (no index) goes with it; a removed item's location goes.
                return path.len() == 1;
            };
            path[1] = new;
            if list == FILE_SERVICE && path.get(2) == Some(&SERVICE_METHOD) {
                match path.get(3).and_then(|&old| renumber(&method_keep, old)) {
                    Some(new) => path[3] = new,
                    None => return path.len() == 3,
                }
            }
            true
        });
    }
    Ok((fds, keep))
}

/// Every type name the message's fields (and its nested messages' fields) refer to.
fn references(message: &DescriptorProto, out: &mut Vec<String>) {
    for field in &message.field {
        if !field.type_name().is_empty() {
            out.push(field.type_name().to_string());
        }
    }
    for nested in &message.nested_type {
        references(nested, out);
    }
}

fn pick<T: Clone>(items: &[T], keep: &[usize]) -> Vec<T> {
    keep.iter().map(|&i| items[i].clone()).collect()
}

/// The new index of the item that was at `old`, if it is kept.
fn renumber(keep: &[usize], old: i32) -> Option<i32> {
    let old = usize::try_from(old).ok()?;
    let new = keep.iter().position(|&k| k == old)?;
    i32::try_from(new).ok()
}
