//! Writing the Prometheus text format (0.0.4) and OpenMetrics 1.0 from the same calls.
//!
//! Hand-written rather than a registry: a scrape renders straight from the latest snapshot, with
//! no per-series objects kept between cycles, in one pass into one buffer.

use std::fmt::Write;

/// Which exposition format the scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header offers it, else the classic text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sample names end in `_total`.
    Counter,
    Gauge,
    /// Value 1, labels carry the information; sample names end in `_info`. A gauge in the text
    /// format, an `info` family in OpenMetrics.
    Info,
    Histogram,
}

pub struct Exposition {
    format: Format,
    out: String,
}

impl Exposition {
    pub fn new(format: Format, capacity: usize) -> Self {
        Exposition {
            format,
            out: String::with_capacity(capacity),
        }
    }

    /// Starts a family. `name` is the sample name for gauges (and the base for histograms),
    /// with its `_total` / `_info` suffix for counters and info metrics.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let (family, kind_text) = match (self.format, kind) {
            (Format::Text, Kind::Counter) => (name, "counter"),
            (Format::Text, Kind::Gauge | Kind::Info) => (name, "gauge"),
            (_, Kind::Histogram) => (name, "histogram"),
            (Format::OpenMetrics, Kind::Counter) => {
                (name.strip_suffix("_total").unwrap_or(name), "counter")
            }
            (Format::OpenMetrics, Kind::Gauge) => (name, "gauge"),
            (Format::OpenMetrics, Kind::Info) => {
                (name.strip_suffix("_info").unwrap_or(name), "info")
            }
        };
        let _ = writeln!(self.out, "# HELP {family} {help}");
        let _ = writeln!(self.out, "# TYPE {family} {kind_text}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_into(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_openmetrics_from_the_same_calls() {
        for format in [Format::Text, Format::OpenMetrics] {
            let mut e = Exposition::new(format, 0);
            e.family("x_bytes_total", Kind::Counter, "Bytes.");
            e.sample("x_bytes_total", &[("pod", "a\"b\\c\nd")], 5);
            e.family("y_info", Kind::Info, "Mapping.");
            e.sample("y_info", &[], 1);
            let out = e.finish();
            match format {
                Format::Text => {
                    assert!(out.contains("# TYPE x_bytes_total counter\n"));
                    assert!(out.contains("# TYPE y_info gauge\n"));
                    assert!(!out.contains("# EOF"));
                }
                Format::OpenMetrics => {
                    assert!(out.contains("# TYPE x_bytes counter\n"));
                    assert!(out.contains("# TYPE y info\n"));
                    assert!(out.ends_with("# EOF\n"));
                }
            }
            assert!(
                out.contains(r#"x_bytes_total{pod="a\"b\\c\nd"} 5"#),
                "{out}"
            );
        }
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
