//! The lifecycle calls of every state that lists them (docs/generators.md):
//! on a dataset made during the check, `verify` (it must still hold), then
//! `reset` (its answer must keep the state's promises), then `cleanup`
//! (last: it removes the dataset from the system under test).

use stockroom_generators::lifecycle::MAX_REASON_BYTES;
use stockroom_generators::validate_reset_answer;
use stockroom_protocol::generator::{
    CleanupAnswer, LifecycleCall, LifecycleRequest, ResetAnswer, VerifyAnswer,
};

use super::findings::{Finding, broken_promise, call_failed};
use super::{Checker, secret_findings};

impl Checker<'_> {
    pub(super) async fn run_every_lifecycle_call(&mut self) {
        for (i, p) in self.declared_states() {
            if p.lifecycle.is_empty() {
                continue;
            }
            let key = (p.type_name.clone(), p.state.clone());
            let Some(dataset) = self.made.get(&key).cloned() else {
                let label = self.label(i).to_string();
                for call in &p.lifecycle {
                    self.skip(
                        &label,
                        format!("{call} {}/{}", p.type_name, p.state),
                        "no dataset of the state could be made",
                    );
                }
                continue;
            };
            for call in [
                LifecycleCall::Verify,
                LifecycleCall::Reset,
                LifecycleCall::Cleanup,
            ] {
                if !p.lifecycle.contains(&call) {
                    continue;
                }
                let request = LifecycleRequest {
                    request_id: self.next_request_id(),
                    dataset: dataset.clone(),
                };
                let what = format!("{call} {}/{}", p.type_name, p.state);
                let client = &self.clients[i];
                let mut findings = Vec::new();
                let elapsed = match call {
                    LifecycleCall::Verify => {
                        let (elapsed, result) = self
                            .timed(client.lifecycle::<VerifyAnswer>(call, &request))
                            .await;
                        findings.extend(self.slow(elapsed, &result));
                        match result {
                            Ok(a) if !a.valid => findings.push(Finding::violation(
                                format!(
                                    "says a dataset made just now no longer holds ({})",
                                    a.reason.as_deref().unwrap_or("no reason given")
                                ),
                                "answer `valid: true` while the dataset's records exist in the system under test",
                            )),
                            Ok(a) if a.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_BYTES) => {
                                findings.push(Finding::violation(
                                    format!("the reason is longer than {MAX_REASON_BYTES} bytes"),
                                    "keep the reason to a sentence: it is kept in the dataset's history",
                                ))
                            }
                            Ok(_) => {}
                            Err(kind) => findings.push(call_failed(&kind, self.command_mode[i])),
                        }
                        elapsed
                    }
                    LifecycleCall::Reset => {
                        let (elapsed, result) = self
                            .timed(client.lifecycle::<ResetAnswer>(call, &request))
                            .await;
                        findings.extend(self.slow(elapsed, &result));
                        match result {
                            Ok(a) => {
                                if let Err(v) = validate_reset_answer(&p.fields, &a) {
                                    findings.extend(v.problems.iter().map(|p| broken_promise(p)));
                                }
                                findings.extend(secret_findings(
                                    &a.data,
                                    &a.secret_fields,
                                    &p.secret_fields,
                                    &dataset.secret_fields,
                                ));
                            }
                            Err(kind) => findings.push(call_failed(&kind, self.command_mode[i])),
                        }
                        elapsed
                    }
                    LifecycleCall::Cleanup => {
                        let (elapsed, result) = self
                            .timed(client.lifecycle::<CleanupAnswer>(call, &request))
                            .await;
                        findings.extend(self.slow(elapsed, &result));
                        if let Err(kind) = result {
                            findings.push(call_failed(&kind, self.command_mode[i]));
                        }
                        elapsed
                    }
                };
                self.push(Some(i), what, Some(elapsed), findings, None);
            }
        }
    }
}
