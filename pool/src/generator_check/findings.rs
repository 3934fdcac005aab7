//! What `generator-check` found, each with what to fix, and how it is printed.

use std::fmt::Write as _;
use std::time::Duration;

use stockroom_generators::ErrorKind;

/// How bad a finding is: violations make the check fail, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Violation,
    Warning,
}

/// One problem and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
    pub fix: String,
}

impl Finding {
    pub fn violation(text: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Violation,
            text: text.into(),
            fix: fix.into(),
        }
    }

    pub fn warning(text: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warning,
            text: text.into(),
            fix: fix.into(),
        }
    }
}

/// One call made (or skipped) and what it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index of the checked generator (None: about all of them together).
    pub generator: Option<usize>,
    /// `generate customer/active`, `extend customer/new with "verify-email"`, ...
    pub what: String,
    /// None when the call was not made.
    pub elapsed: Option<Duration>,
    pub findings: Vec<Finding>,
    /// A short note on success (`3 states, 1 extension`).
    pub note: Option<String>,
}

/// Everything one run of the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// How each checked generator is named in the report.
    pub generators: Vec<String>,
    pub entries: Vec<Entry>,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.count(Level::Violation)
    }

    pub fn warnings(&self) -> usize {
        self.count(Level::Warning)
    }

    fn count(&self, level: Level) -> usize {
        self.entries
            .iter()
            .flat_map(|e| &e.findings)
            .filter(|f| f.level == level)
            .count()
    }

    pub fn calls(&self) -> usize {
        self.entries.iter().filter(|e| e.elapsed.is_some()).count()
    }

    /// The report as printed: one block per generator, then the summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut groups: Vec<Option<usize>> = (0..self.generators.len()).map(Some).collect();
        groups.push(None);
        for group in groups {
            let entries: Vec<&Entry> = self
                .entries
                .iter()
                .filter(|e| e.generator == group)
                .collect();
            if entries.is_empty() {
                continue;
            }
            match group {
                Some(i) => {
                    let _ = writeln!(out, "{}", self.generators[i]);
                }
                None => {
                    let _ = writeln!(out, "all checked generators together");
                }
            }
            for e in entries {
                render_entry(&mut out, e);
            }
        }
        let (violations, warnings) = (self.violations(), self.warnings());
        let _ = writeln!(
            out,
            "{}: {} generator{}, {} call{}, {violations} violation{}, {warnings} warning{}",
            if violations == 0 { "clean" } else { "FAILED" },
            self.generators.len(),
            plural(self.generators.len()),
            self.calls(),
            plural(self.calls()),
            plural(violations),
            plural(warnings),
        );
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn render_entry(out: &mut String, e: &Entry) {
    let label = if e.findings.iter().any(|f| f.level == Level::Violation) {
        "FAIL"
    } else if e.elapsed.is_none() {
        "SKIP"
    } else if e.findings.is_empty() {
        "ok"
    } else {
        "WARN"
    };
    let time = e
        .elapsed
        .map(|d| format!(" ({})", human(d)))
        .unwrap_or_default();
    let note = e
        .note
        .as_deref()
        .map(|n| format!(": {n}"))
        .unwrap_or_default();
    let _ = writeln!(out, "  {label:<5} {}{note}{time}", e.what);
    let mut fixes_shown: Vec<&str> = Vec::new();
    for f in &e.findings {
        let mark = match f.level {
            Level::Violation => "violation",
            Level::Warning => "warning",
        };
        let _ = writeln!(out, "        {mark}: {}", f.text);
        // The same advice once per call is enough.
        if !f.fix.is_empty() && !fixes_shown.contains(&f.fix.as_str()) {
            let _ = writeln!(out, "        fix: {}", f.fix);
            fixes_shown.push(&f.fix);
        }
    }
}

/// `41 ms`, `2.5 s`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A failed call as a finding, with what usually causes it.
pub fn call_failed(kind: &ErrorKind, command_mode: bool) -> Finding {
    let fix = match kind {
        ErrorKind::Timeout(_) => {
            "answer within the time limit (generator-check --timeout; in the pool, `timeout` of the \
             [[generators]] entry, 30s by default); a slow call of a real system may need a higher limit"
        }
        ErrorKind::Connect(_) => {
            "start the generator first and pass its base URL (e.g. --url http://127.0.0.1:9001)"
        }
        ErrorKind::HttpStatus { status, .. } if *status < 500 => {
            "the generator refused a request it declared it can serve; its message above says why"
        }
        ErrorKind::HttpStatus { .. } => {
            "the generator failed (5xx); its log and the message above say why"
        }
        ErrorKind::Spawn(_) => {
            "check the command: the program must exist and be executable (e.g. --command \"python3 gen.py\")"
        }
        ErrorKind::ExitStatus { stderr, .. } if stderr.trim().is_empty() => {
            "it wrote nothing to stderr: write why it failed there (the pool keeps it with the failure); \
             exit 0 only with the answer on stdout"
        }
        ErrorKind::ExitStatus { .. } => {
            "exit 0 with the answer on stdout; the command's stderr above says why it did not"
        }
        ErrorKind::Malformed(text) if text.contains("log output on stdout") => {
            "print log lines to stderr (print(..., file=sys.stderr), console.error); stdout is for the answer alone"
        }
        ErrorKind::Malformed(_) if command_mode => {
            "write exactly one JSON answer of docs/generators.md to stdout (nothing else), then exit 0"
        }
        ErrorKind::Malformed(_) => {
            "answer with exactly one JSON body of docs/generators.md and a 2xx status"
        }
        ErrorKind::ContractViolation(_) | ErrorKind::BackingOff(_) => "",
    };
    Finding::violation(kind.to_string(), fix)
}

/// One broken promise of an answer (a problem from the generators crate's
/// validation), with what to change.
pub fn broken_promise(problem: &str) -> Finding {
    let fix = if problem.starts_with("promised field") {
        "put every field the state promises (`fields` in capabilities; dotted paths reach into objects) \
         into every answer's data, not null, or stop promising it"
    } else if problem.starts_with("secret field") {
        "list in secret_fields only fields that are in data"
    } else if problem.starts_with("entity") || problem.contains("entity is listed twice") {
        "entities are `kind:id` strings (`customer:C1042`), each listed once"
    } else if problem.starts_with("requested attribute")
        || problem.contains("differs from the requested")
    {
        "echo every requested attribute with the requested value in the answer's attributes"
    } else if problem.starts_with("attribute") {
        "answer only attributes the state declares, with one of the declared values"
    } else if problem.starts_with("data must be") {
        "data must be a JSON object of the dataset's fields"
    } else {
        "keep the promises of the capabilities"
    };
    Finding::violation(problem, fix)
}
