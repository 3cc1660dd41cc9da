//! End-to-end tests of [`load`]: parse, merge, expand, deserialize.

use std::path::PathBuf;

use serde_json::json;

use super::*;

const EXAMPLE: &str = "\
receivers:
  netns:
    collection_interval: 10s
resolvers:
  interfaces: {}
exporters:
  debug:
    verbosity: normal
  debug/quiet:
service:
  extensions: []
  pipelines:
    metrics:
      receivers: [netns]
      resolvers: [interfaces]
      exporters: [debug]
  telemetry:
    logs:
      level: info      # trace|debug|info|warn|error
      encoding: console # console|json
";

fn inline(name: &str, text: &str) -> Source {
    Source::Inline {
        name: name.into(),
        text: text.into(),
    }
}

fn test_env(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("9100".into()),
        "LEVEL" => Some("debug".into()),
        "HOST" => Some("node-1".into()),
        _ => None,
    }
}

fn load_texts(texts: &[&str]) -> Result<Loaded, ConfigErrors> {
    let sources: Vec<Source> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| inline(&format!("{index}.yaml"), text))
        .collect();
    load_with_env(&sources, &test_env)
}

fn error_lines(texts: &[&str]) -> Vec<String> {
    load_texts(texts)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn loads_the_example() {
    let loaded = load_texts(&[EXAMPLE]).unwrap();
    assert!(loaded.warnings.is_empty());
    let config = loaded.config;
    assert_eq!(
        config.receivers["netns"],
        json!({"collection_interval": "10s"})
    );
    assert_eq!(config.resolvers["interfaces"], json!({}));
    assert_eq!(config.exporters["debug/quiet"], json!(null));
    assert!(config.extensions.is_empty());
    let metrics = &config.service.pipelines["metrics"];
    assert_eq!(metrics.receivers, vec!["netns"]);
    assert_eq!(metrics.resolvers, vec!["interfaces"]);
    assert_eq!(metrics.exporters, vec!["debug"]);
    assert_eq!(config.service.telemetry.logs.level, LogLevel::Info);
    assert_eq!(config.service.telemetry.logs.encoding, LogEncoding::Console);
}

#[test]
fn no_sources_and_empty_sources_give_defaults() {
    assert_eq!(load_texts(&[]).unwrap().config, RawConfig::default());
    assert_eq!(
        load_texts(&["", "# nothing\n"]).unwrap().config,
        RawConfig::default()
    );
}

#[test]
fn syntax_error_reports_file_line_and_column() {
    let errors = error_lines(&[EXAMPLE, "service:\n  pipelines: {metrics: [}\n"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0],
        "invalid YAML: mismatched bracket '[' closed by '}' (at 1.yaml:2:24)"
    );
}

#[test]
fn syntax_errors_of_every_file_are_reported() {
    let errors = error_lines(&["a: [", "b: {", "fine: 1"]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("0.yaml"));
    assert!(errors[1].contains("1.yaml"));
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let sources = [
        inline("a.yaml", EXAMPLE),
        Source::File(PathBuf::from("/does/not/exist.yaml")),
    ];
    let errors = load_with_env(&sources, &test_env).unwrap_err();
    assert_eq!(errors.len(), 1);
    let text = errors.to_string();
    assert!(
        text.contains("cannot read configuration file `/does/not/exist.yaml`"),
        "{text}"
    );
}

#[test]
fn sources_merge_in_order() {
    let loaded = load_texts(&[
        EXAMPLE,
        "exporters:\n  debug:\n    verbosity: detailed\n  debug/quiet:\n\
         service:\n  pipelines:\n    metrics:\n      receivers: [other]\n",
        "exporters:\n  debug/quiet:\n    sampling: 2\n",
    ])
    .unwrap();
    let config = loaded.config;
    assert_eq!(config.exporters["debug"], json!({"verbosity": "detailed"}));
    assert_eq!(config.exporters["debug/quiet"], json!({"sampling": 2}));
    let metrics = &config.service.pipelines["metrics"];
    assert_eq!(metrics.receivers, vec!["other"], "lists are replaced");
    assert_eq!(metrics.exporters, vec!["debug"], "untouched keys are kept");
}

#[test]
fn later_null_keeps_earlier_settings() {
    let loaded = load_texts(&[
        "exporters:\n  debug/quiet:\n    verbosity: basic\n",
        "exporters:\n  debug/quiet:\n",
    ])
    .unwrap();
    assert_eq!(
        loaded.config.exporters["debug/quiet"],
        json!({"verbosity": "basic"})
    );
}

#[test]
fn variables_are_expanded_after_merging_and_typed() {
    let loaded = load_texts(&[
        "receivers:\n  netns:\n    port: ${env:PORT}\n    host: ${HOST}\n    url: http://${HOST}:${PORT}\n",
        "receivers:\n  netns:\n    price: $$5\n    \"${env:HOST}\": key\n",
        "service:\n  telemetry:\n    logs:\n      level: ${env:LEVEL}\n",
    ])
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let netns = &loaded.config.receivers["netns"];
    assert_eq!(netns["port"], json!(9100));
    assert_eq!(netns["host"], json!("node-1"));
    assert_eq!(netns["url"], json!("http://node-1:9100"));
    assert_eq!(netns["price"], json!("$5"));
    assert_eq!(netns["${env:HOST}"], json!("key"), "keys are not expanded");
    assert_eq!(loaded.config.service.telemetry.logs.level, LogLevel::Debug);
}

#[test]
fn unset_variables_warn_with_their_path() {
    let loaded = load_texts(&[
        "exporters:\n  otlp:\n    endpoint: ${env:OTLP_ENDPOINT}\n    token: ${env:TOKEN:-none}\n",
    ])
    .unwrap();
    assert_eq!(
        loaded.config.exporters["otlp"],
        json!({"endpoint": "", "token": "none"})
    );
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0]
            .starts_with("exporters::otlp::endpoint: environment variable `OTLP_ENDPOINT`")
    );
}

#[test]
fn bad_references_are_errors_at_their_path_and_position() {
    let errors = error_lines(&[
        "exporters:\n  otlp:\n    headers: [ok, \"${file:/etc/token}\"]\n    endpoint: ${env:X\n",
    ]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("exporters::otlp::endpoint: unclosed variable reference"),
        "{errors:?}"
    );
    assert!(errors[0].ends_with("(at 0.yaml:4:5)"), "{errors:?}");
    assert!(
        errors[1].starts_with("exporters::otlp::headers::1: unsupported variable scheme `file`"),
        "{errors:?}"
    );
    assert!(errors[1].ends_with("(at 0.yaml:3:19)"), "{errors:?}");
}

#[test]
fn a_bad_reference_is_reported_once() {
    let errors = error_lines(&["service:\n  telemetry:\n    logs:\n      level: ${env:LEVEL\n"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("service::telemetry::logs::level: unclosed"),
        "{errors:?}"
    );
}

#[test]
fn unknown_top_level_key() {
    let errors = error_lines(&["receiver:\n  netns: {}\n"]);
    assert_eq!(
        errors,
        vec![
            "unknown top-level key `receiver`, expected one of `receivers`, `resolvers`, \
             `exporters`, `extensions`, `service` (at 0.yaml:1:1)"
        ]
    );
}

#[test]
fn unknown_keys_in_service_pipeline_and_telemetry() {
    let errors = error_lines(&["\
service:
  pipeline: {}
  pipelines:
    metrics:
      exporter: [debug]
      receivers: [netns]
      resolver: [x]
  telemetry:
    log: {}
    logs:
      levl: debug
"]);
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors[0].starts_with("service: unknown field `pipeline`, expected one of `extensions`, `pipelines`, `telemetry` (at 0.yaml:2:3)"), "{errors:?}");
    assert!(
        errors[1]
            .starts_with("service::pipelines::metrics: unknown field `exporter`, expected one of"),
        "{errors:?}"
    );
    assert!(errors[1].ends_with("(at 0.yaml:5:7)"), "{errors:?}");
    assert!(
        errors[2].starts_with("service::pipelines::metrics: unknown field `resolver`"),
        "{errors:?}"
    );
    assert!(
        errors[3].starts_with("service::telemetry: unknown field `log`, expected one of `logs`"),
        "{errors:?}"
    );
    assert!(
        errors[4].starts_with(
            "service::telemetry::logs: unknown field `levl`, expected `level` or `encoding`"
        ),
        "{errors:?}"
    );
}

#[test]
fn wrong_types_are_reported_with_paths_in_every_section() {
    let errors = error_lines(&["\
receivers: [a]
exporters: debug
service:
  extensions: health
  pipelines:
    metrics:
      receivers: netns
  telemetry:
    logs:
      level: loud
      encoding: 5
"]);
    assert_eq!(errors.len(), 6, "{errors:?}");
    assert_eq!(
        errors[0],
        "exporters: invalid type: string \"debug\", expected a map (at 0.yaml:2:1)"
    );
    assert_eq!(
        errors[1],
        "receivers: invalid type: sequence, expected a map (at 0.yaml:1:1)"
    );
    assert!(
        errors[2].starts_with(
            "service::extensions: invalid type: string \"health\", expected a sequence"
        ),
        "{errors:?}"
    );
    assert!(
        errors[3]
            .starts_with("service::pipelines::metrics::receivers: invalid type: string \"netns\""),
        "{errors:?}"
    );
    assert!(
        errors[4].starts_with("service::telemetry::logs::encoding: invalid type: integer `5`"),
        "{errors:?}"
    );
    assert!(
        errors[5].starts_with(
            "service::telemetry::logs::level: unknown variant `loud`, expected one of `trace`"
        ),
        "{errors:?}"
    );
}

#[test]
fn null_sections_mean_defaults() {
    let config = load_texts(&["receivers:\nservice:\n  pipelines:\n    metrics:\n"])
        .unwrap()
        .config;
    assert!(config.receivers.is_empty());
    assert_eq!(
        config.service.pipelines["metrics"],
        PipelineConfig::default()
    );
}

#[test]
fn components_parse_from_loaded_settings() {
    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct DebugConfig {
        verbosity: String,
    }
    impl Validate for DebugConfig {}

    let config = load_texts(&[EXAMPLE]).unwrap().config;
    let quiet: DebugConfig = parse_component(
        "exporters::debug/quiet",
        config.exporters["debug/quiet"].clone(),
    )
    .unwrap();
    assert_eq!(quiet.verbosity, "");
    let debug: DebugConfig =
        parse_component("exporters::debug", config.exporters["debug"].clone()).unwrap();
    assert_eq!(debug.verbosity, "normal");
}

#[test]
fn load_reads_files_and_the_process_environment() {
    let path = std::env::temp_dir().join(format!("netshim-load-{}.yaml", std::process::id()));
    std::fs::write(&path, "receivers:\n  netns:\n    path: ${env:PATH}\n    unset: ${env:NETSHIM_SURELY_UNSET_VARIABLE}\n").unwrap();
    let loaded = load(&[Source::File(path.clone())]);
    std::fs::remove_file(&path).unwrap();
    let loaded = loaded.unwrap();
    let netns = &loaded.config.receivers["netns"];
    if let Some(expected) = std::env::var_os("PATH") {
        assert_eq!(netns["path"], json!(expected.to_string_lossy()));
    }
    assert_eq!(netns["unset"], json!(""));
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("NETSHIM_SURELY_UNSET_VARIABLE"));
}

#[test]
fn a_directory_is_not_a_configuration_file() {
    let errors = load(&[Source::File(std::env::temp_dir())]).unwrap_err();
    assert!(errors.to_string().contains("it is a directory"), "{errors}");
}
