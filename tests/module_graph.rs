//! The crate's house rules, checked on its source: no import circles between sibling modules,
//! the `sys` layer imports nothing of the crate outside itself, and only the pipeline imports
//! the component registry.
//!
//! A module may use its parent's items and the parent its children's (that is how a module and
//! its files share one type); what is forbidden is a circle between siblings, at any depth:
//! `components → receivers → components` at the top, `otlp::grpc → otlp::transport →
//! otlp::grpc` below. The graph is read from `use` items and inline `crate::`/`super::` paths of
//! non-test code, so a new circle fails here, naming the imports that close it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// One import: `from` names `to` at `line` of `file`.
#[derive(Debug, Clone)]
struct Import {
    from: Module,
    to: Module,
    file: PathBuf,
    line: usize,
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/mod.rs` → `[a]`, `src/a/b.rs` → `[a, b]`; `None` for the binary's `main.rs` and for
/// files of test modules (`*_tests.rs`, `generated/`, which are code, not a module of ours, stay
/// in: they import nothing of the crate).
fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if stem == "main" && parts.is_empty() {
        return None;
    }
    if stem.ends_with("_tests") || stem == "tests" {
        return None;
    }
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    Some(parts)
}

/// The text without comments and without its `#[cfg(test)]` items (a test module may import
/// what it likes); what is dropped leaves an empty line, so line numbers stay.
fn code_of(text: &str) -> String {
    let mut lines = Vec::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_cfg_test = false;
    for raw in text.lines() {
        let line = match raw.find("//") {
            Some(i) => &raw[..i],
            None => raw,
        };
        let trimmed = line.trim();
        if skip_depth.is_none() && trimmed.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            lines.push(String::new());
            continue;
        }
        let opens = line.matches('{').count() as i32;
        let closes = line.matches('}').count() as i32;
        if pending_cfg_test && !trimmed.is_empty() && !trimmed.starts_with("#[") {
            pending_cfg_test = false;
            if opens > closes {
                skip_depth = Some(depth);
            }
            depth += opens - closes;
            // The item's first line (or a one-line item such as `mod x_tests;`).
            lines.push(String::new());
            continue;
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            lines.push(String::new());
            continue;
        }
        lines.push(line.to_string());
    }
    lines.join("\n")
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    if !tree.ends_with('}') {
        return vec![tree[..open].to_string()]; // not a use tree: keep what precedes the brace
    }
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len().saturating_sub(1)];
    let mut parts = Vec::new();
    let (mut level, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => level += 1,
            '}' => level -= 1,
            ',' if level == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |e| format!("{prefix}{e}")))
        .collect()
}

/// `crate::`, `super::` and `self::` paths of some code, use trees expanded, each with the
/// byte offset where it starts.
fn paths_in(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .any(|s| rest.starts_with(s));
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary && (i < 2 || &code[i - 2..i] != "::") {
            // The path runs through identifiers, `::` and (for a use tree) braces and commas.
            let mut end = i;
            let mut level = 0;
            for (j, c) in rest.char_indices() {
                let ok = c.is_ascii_alphanumeric()
                    || c == '_'
                    || c == ':'
                    || (c == '{')
                    || (c == '}' && level > 0)
                    || (level > 0 && (c == ',' || c.is_whitespace() || c == '*'));
                if !ok {
                    break;
                }
                if c == '{' {
                    level += 1;
                }
                if c == '}' {
                    level -= 1;
                }
                end = i + j + c.len_utf8();
            }
            out.extend(expand(&code[i..end]).into_iter().map(|p| (i, p)));
            i = end.max(i + 1);
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// The module a path names: its longest prefix that is a module of the crate.
fn resolve(from: &Module, path: &str, modules: &BTreeSet<Module>) -> Module {
    let mut segs = path.split("::").filter(|s| !s.is_empty()).peekable();
    // `super` of `a/b.rs` and of `a/b/mod.rs` (both module `a::b`) is `a`.
    let mut base: Module = match segs.peek().copied() {
        Some("crate") => {
            segs.next();
            Vec::new()
        }
        _ => from.clone(),
    };
    while let Some(&s) = segs.peek() {
        match s {
            "super" => {
                base.pop();
                segs.next();
            }
            "self" => {
                segs.next();
            }
            _ => break,
        }
    }
    for s in segs {
        let mut next = base.clone();
        next.push(s.to_string());
        if modules.contains(&next) {
            base = next;
        } else {
            break;
        }
    }
    base
}

fn imports() -> Vec<Import> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    files.sort();
    let owned: Vec<(Module, PathBuf)> = files
        .iter()
        .filter_map(|f| module_of(&src, f).map(|m| (m, f.clone())))
        .collect();
    let modules: BTreeSet<Module> = owned.iter().map(|(m, _)| m.clone()).collect();
    let mut out = Vec::new();
    for (module, file) in &owned {
        let text = std::fs::read_to_string(file).unwrap();
        let code = code_of(&text);
        for (offset, path) in paths_in(&code) {
            let line = code[..offset].matches('\n').count() + 1;
            {
                let to = resolve(module, &path, &modules);
                if &to != module {
                    out.push(Import {
                        from: module.clone(),
                        to,
                        file: file.strip_prefix(&src).unwrap().to_path_buf(),
                        line,
                    });
                }
            }
        }
    }
    out
}

/// For every parent, the graph among its children (each child standing for its whole
/// subtree); edges to or from the parent itself do not count.
fn sibling_graphs(imports: &[Import]) -> BTreeMap<Module, BTreeMap<String, Vec<(String, Import)>>> {
    let mut graphs: BTreeMap<Module, BTreeMap<String, Vec<(String, Import)>>> = BTreeMap::new();
    for import in imports {
        let common = import
            .from
            .iter()
            .zip(&import.to)
            .take_while(|(a, b)| a == b)
            .count();
        let (Some(a), Some(b)) = (import.from.get(common), import.to.get(common)) else {
            continue; // one is an ancestor of the other
        };
        graphs
            .entry(import.from[..common].to_vec())
            .or_default()
            .entry(a.clone())
            .or_default()
            .push((b.clone(), import.clone()));
    }
    graphs
}

/// A circle in `graph`, as the imports that make it, if there is one.
fn find_circle(graph: &BTreeMap<String, Vec<(String, Import)>>) -> Option<Vec<Import>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, Vec<(String, Import)>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<(String, Import)>,
    ) -> Option<Vec<Import>> {
        state.insert(node.to_string(), 1);
        for (next, import) in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|(n, _)| n == next).unwrap_or(0);
                    let mut circle: Vec<Import> =
                        stack[start..].iter().map(|(_, i)| i.clone()).collect();
                    circle.push(import.clone());
                    return Some(circle);
                }
                0 => {
                    // Each entry: the module an import leaves, and the import.
                    stack.push((node.to_string(), import.clone()));
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                    stack.pop();
                }
                _ => {}
            }
        }
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn describe(import: &Import) -> String {
    format!(
        "{} → {} ({}:{})",
        display(&import.from),
        display(&import.to),
        import.file.display(),
        import.line
    )
}

fn display(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn the_reader_understands_use_trees_and_test_modules() {
    let mut got = expand("crate::a::{b, c::{d, e}, f}");
    got.sort();
    assert_eq!(
        got,
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::a::f"
        ]
    );
    let paths: Vec<String> = paths_in(
        "let x = crate::model::Sandbox::default(); use super::{\n    grpc,\n    http,\n};",
    )
    .into_iter()
    .map(|(_, p)| p)
    .collect();
    assert_eq!(
        paths,
        [
            "crate::model::Sandbox::default",
            "super::grpc",
            "super::http"
        ]
    );
    let code =
        code_of("use a;\n#[cfg(test)]\nmod tests {\n    use crate::x;\n}\nuse b; // crate::y\n");
    assert_eq!(code, "use a;\n\n\n\n\nuse b; ");
    // A circle is found and reported with its imports.
    let import = |a: &str, b: &str| Import {
        from: vec![a.into()],
        to: vec![b.into()],
        file: PathBuf::from(format!("{a}.rs")),
        line: 1,
    };
    let circle = [import("x", "y"), import("y", "z"), import("z", "x")];
    let graphs = sibling_graphs(&circle);
    assert_eq!(find_circle(&graphs[&Vec::new()]).map(|c| c.len()), Some(3));
    let graphs = sibling_graphs(&circle[..2]);
    assert!(find_circle(&graphs[&Vec::new()]).is_none());
}

#[test]
fn no_circles_between_sibling_modules() {
    let imports = imports();
    assert!(
        imports.len() > 100,
        "the reader found only {} imports",
        imports.len()
    );
    let mut circles = Vec::new();
    for (parent, graph) in sibling_graphs(&imports) {
        if let Some(circle) = find_circle(&graph) {
            let steps: Vec<String> = circle.iter().map(describe).collect();
            circles.push(format!("in {}: {}", display(&parent), steps.join(", ")));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn sys_speaks_only_its_own_types() {
    let outside: Vec<String> = imports()
        .iter()
        .filter(|i| i.from.first().is_some_and(|m| m == "sys"))
        .filter(|i| i.to.first().is_none_or(|m| m != "sys"))
        .map(describe)
        .collect();
    assert!(
        outside.is_empty(),
        "sys imports the crate:\n{}",
        outside.join("\n")
    );
}

#[test]
fn only_the_pipeline_imports_the_registry() {
    let registry: Module = vec!["pipeline".into(), "registry".into()];
    let imports = imports();
    assert!(
        imports.iter().any(|i| i.to == registry),
        "the registry moved: update this test"
    );
    let others: Vec<String> = imports
        .iter()
        .filter(|i| i.to == registry && i.from.first().is_none_or(|m| m != "pipeline"))
        .map(describe)
        .collect();
    assert!(
        others.is_empty(),
        "outside the pipeline:\n{}",
        others.join("\n")
    );
}
