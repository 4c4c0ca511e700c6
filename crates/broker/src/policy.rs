//! Rego policies (regorus): the attestation policy turns verified claims
//! into an AR4SI trustworthiness vector; the resource policy decides, from a
//! token's claims, whether a resource may be released (`data.policy.allow`,
//! denied when undefined or not `true`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::token::{ANNOTATED_EVIDENCE, ATTESTER_CLAIMS};

/// The built-in attestation policy.
pub const DEFAULT_ATTESTATION_POLICY: &str = include_str!("../policies/attestation_default.rego");
/// The built-in resource policy.
pub const DEFAULT_RESOURCE_POLICY: &str = include_str!("../policies/resource_default.rego");
/// The id of the default CPU attestation policy.
pub const DEFAULT_CPU_POLICY_ID: &str = "default_cpu";

/// The package that names the entry points: one rule per query, so that a
/// rule the policy does not define evaluates to undefined (deny) instead of
/// an error, exactly as the query `data.policy.<rule>` would.
const ENTRYPOINTS: &str = "package veil_entrypoint\n\
import rego.v1\n\
trust_vector := data.policy.trust_vector\n\
allow := data.policy.allow\n";

/// The rule a policy is evaluated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `data.policy.trust_vector` (attestation policies).
    TrustVector,
    /// `data.policy.allow` (the resource policy).
    Allow,
}

impl Rule {
    fn entrypoint(self) -> &'static str {
        match self {
            Rule::TrustVector => "data.veil_entrypoint.trust_vector",
            Rule::Allow => "data.veil_entrypoint.allow",
        }
    }
}

/// Parsed Rego, not yet bound to a data document.
#[derive(Debug, Clone)]
pub struct Policy {
    engine: regorus::Engine,
}

/// A policy bound to one rule and one data document, analysed once and,
/// when regorus's bytecode compiler accepts it, compiled for its VM (RVM):
/// each evaluation only sets the input and runs the rule (no clone of the
/// parsed modules, no re-analysis, no JSON text in between). The default
/// policies run on the VM (≈ 6× faster than the tree-walking interpreter
/// here); a policy the compiler does not cover runs on the interpreter.
/// Both give the same results: the tests below run every policy case
/// through both.
#[derive(Debug, Clone)]
pub struct Prepared {
    compiled: regorus::CompiledPolicy,
    vm: Option<VmProgram>,
}

/// An RVM program with its data document.
#[derive(Debug, Clone)]
struct VmProgram {
    program: std::sync::Arc<regorus::rvm::program::Program>,
    data: regorus::Value,
}

/// Instructions one VM evaluation may run (regorus's default, 25,000, is
/// too tight for large reference-value sets; Rego terminates, this only
/// bounds a pathological policy).
const VM_MAX_INSTRUCTIONS: usize = 10_000_000;

impl Policy {
    /// Parses Rego text.
    pub fn compile(id: &str, rego: &str) -> Result<Self, String> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(format!("{id}.rego"), rego.to_string())
            .map_err(|e| format!("policy {id}: {e}"))?;
        engine
            .add_policy("veil_entrypoint.rego".into(), ENTRYPOINTS.into())
            .map_err(|e| format!("policy {id}: {e}"))?;
        Ok(Policy { engine })
    }

    /// Binds the policy to `rule` and the data document `data`.
    pub fn prepare(&self, rule: Rule, data: &Value) -> Result<Prepared, String> {
        let mut engine = self.engine.clone();
        let data = to_rego(data);
        engine.add_data(data.clone()).map_err(|e| e.to_string())?;
        let compiled = engine
            .compile_with_entrypoint(&rule.entrypoint().into())
            .map_err(|e| e.to_string())?;
        let vm = match regorus::languages::rego::compiler::Compiler::compile_from_policy(
            &compiled,
            &[rule.entrypoint()],
        ) {
            Ok(program) => Some(VmProgram { program, data }),
            Err(e) => {
                tracing::info!(error = %e, "policy runs on the Rego interpreter (not compilable to RVM)");
                None
            }
        };
        Ok(Prepared { compiled, vm })
    }

    /// Prepares for `data.policy.trust_vector` with the reference values
    /// as `data.reference` and evaluates it once.
    pub fn trust_vector(
        &self,
        input: &Value,
        reference: &Value,
    ) -> Result<Map<String, Value>, String> {
        self.prepare(Rule::TrustVector, &reference_data(reference.clone()))?
            .trust_vector(&Input::new(input.clone()))
    }

    /// Prepares for `data.policy.allow` with `data` and evaluates it once.
    pub fn allow(&self, input: &Value, data: &Value) -> Result<bool, String> {
        self.prepare(Rule::Allow, data)?
            .allow(&Input::new(input.clone()))
    }
}

/// The data document of attestation policies.
pub fn reference_data(reference: Value) -> Value {
    json!({"reference": reference})
}

/// JSON in regorus's value form, converted by walking the tree: no serde
/// visitor in between and one allocation per string (this conversion was
/// most of a policy evaluation's cost on the broker's hot path).
pub fn to_rego(v: &Value) -> regorus::Value {
    match v {
        Value::Null => regorus::Value::Null,
        Value::Bool(b) => regorus::Value::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                regorus::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                regorus::Value::from(u)
            } else {
                // Without serde_json's arbitrary precision every other
                // number is an f64.
                regorus::Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => regorus::Value::from(s.as_str()),
        Value::Array(a) => regorus::Value::from(a.iter().map(to_rego).collect::<Vec<_>>()),
        Value::Object(m) => regorus::Value::from(
            m.iter()
                .map(|(k, v)| (regorus::Value::from(k.as_str()), to_rego(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// The input of the resource policy for a token's EAR claims `ear`: its
/// regorus form reuses `converted` (submod name → the regorus form of that
/// submod's attester claims, made when the attestation policy ran) for the
/// claims under `ear_attester_claims` and the dotted
/// `ear.veraison.annotated-evidence`, and converts only the rest, so a
/// handshake converts the verified claims once. (The tests' evaluations
/// check every input's regorus form against regorus's own conversion.)
pub fn ear_input(ear: Value, converted: &BTreeMap<String, regorus::Value>) -> Input {
    let rego = match &ear {
        Value::Object(top) => regorus::Value::from(
            top.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("submods", Value::Object(subs)) => regorus::Value::from(
                            subs.iter()
                                .map(|(name, sub)| {
                                    (
                                        regorus::Value::from(name.as_str()),
                                        submod_rego(sub, converted.get(name)),
                                    )
                                })
                                .collect::<BTreeMap<_, _>>(),
                        ),
                        _ => to_rego(v),
                    };
                    (regorus::Value::from(k.as_str()), v)
                })
                .collect::<BTreeMap<_, _>>(),
        ),
        other => to_rego(other),
    };
    // The tests check the reused conversion against regorus's own.
    #[cfg(test)]
    assert_eq!(
        rego,
        <regorus::Value as serde::Deserialize>::deserialize(&ear)
            .unwrap_or(regorus::Value::Undefined),
        "token input conversion differs"
    );
    let input = Input::new(ear);
    let _ = input.rego.set(rego);
    input
}

fn submod_rego(sub: &Value, claims: Option<&regorus::Value>) -> regorus::Value {
    match (sub, claims) {
        (Value::Object(m), Some(claims)) => regorus::Value::from(
            m.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        ATTESTER_CLAIMS | ANNOTATED_EVIDENCE => claims.clone(),
                        _ => to_rego(v),
                    };
                    (regorus::Value::from(k.as_str()), v)
                })
                .collect::<BTreeMap<_, _>>(),
        ),
        _ => to_rego(sub),
    }
}

/// A policy input: the JSON document and, made on first use and kept, its
/// regorus form. A token's claims are kept by the replica that issued it
/// in regorus form only ([`Input::into_rego_only`]), so the resource
/// policy converts them once per token.
#[derive(Debug)]
pub struct Input {
    /// `None` once only the regorus form is kept.
    json: Option<Value>,
    rego: std::sync::OnceLock<regorus::Value>,
}

impl Input {
    pub fn new(json: Value) -> Self {
        Input {
            json: Some(json),
            rego: std::sync::OnceLock::new(),
        }
    }

    /// The input of attestation policies, `{"tee": …, "claims": …}`
    /// (the claims are moved in; [`Input::into_claims`] gives them back).
    pub fn appraisal(tee: &str, claims: Value) -> Self {
        let mut m = Map::new();
        m.insert("tee".into(), Value::from(tee));
        m.insert("claims".into(), claims);
        Input::new(Value::Object(m))
    }

    /// The input as JSON, unless only its regorus form is kept.
    pub fn json(&self) -> Option<&Value> {
        self.json.as_ref()
    }

    /// The same input keeping only its regorus form (converted now if it
    /// was not yet): half the memory for inputs kept long, and the JSON
    /// tree is freed at once rather than when the input is.
    pub fn into_rego_only(self) -> Self {
        self.rego();
        Input {
            json: None,
            rego: self.rego,
        }
    }

    /// The `claims` member of an [`Input::appraisal`] input, with its
    /// regorus form when the input was converted (so that the token's
    /// input can reuse it; see [`ear_input`]).
    pub fn into_claims(self) -> (Value, Option<regorus::Value>) {
        let rego = self.rego.into_inner().and_then(|r| {
            r.as_object()
                .ok()?
                .get(&regorus::Value::from("claims"))
                .cloned()
        });
        let json = match self.json {
            Some(Value::Object(mut m)) => m.remove("claims").unwrap_or(Value::Null),
            _ => Value::Null,
        };
        (json, rego)
    }

    /// The regorus form.
    pub fn rego(&self) -> &regorus::Value {
        self.rego.get_or_init(|| {
            self.json
                .as_ref()
                .map(to_rego)
                .unwrap_or(regorus::Value::Undefined)
        })
    }
}

impl Prepared {
    fn eval(&self, input: &Input) -> Result<Value, String> {
        let out = self.run(input.rego().clone(), self.vm.as_ref());
        // Every policy evaluation of the tests compares the two engines,
        // and the direct conversion with regorus's own (serde) one (inputs
        // kept in regorus form only were checked when they were made: see
        // `ear_input`).
        #[cfg(test)]
        {
            if let Some(json) = input.json() {
                let via_serde = <regorus::Value as serde::Deserialize>::deserialize(json)
                    .unwrap_or(regorus::Value::Undefined);
                assert_eq!(input.rego(), &via_serde, "input conversion differs");
            }
            if self.vm.is_some() {
                assert_eq!(
                    out,
                    self.run(input.rego().clone(), None),
                    "RVM and interpreter differ: {:?}",
                    input.json()
                );
            }
        }
        out
    }

    fn run(&self, input: regorus::Value, vm: Option<&VmProgram>) -> Result<Value, String> {
        let v = match vm {
            Some(p) => {
                let mut vm = regorus::rvm::vm::RegoVM::new();
                vm.set_max_instructions(VM_MAX_INSTRUCTIONS);
                vm.load_program(p.program.clone());
                vm.set_data(p.data.clone()).map_err(|e| e.to_string())?;
                vm.set_input(input);
                vm.execute().map_err(|e| e.to_string())
            }
            None => self
                .compiled
                .eval_with_input(input)
                .map_err(|e| e.to_string()),
        }?;
        if v == regorus::Value::Undefined {
            return Ok(Value::Null);
        }
        serde_json::to_value(&v).map_err(|e| e.to_string())
    }

    /// Evaluates `data.policy.trust_vector`. Missing or malformed entries
    /// make the vector contraindicated in hardware (deny by default).
    pub fn trust_vector(&self, input: &Input) -> Result<Map<String, Value>, String> {
        let out = self.eval(input)?;
        let Value::Object(map) = out else {
            return Err("data.policy.trust_vector is undefined or not an object".into());
        };
        let mut vector = Map::new();
        for key in [
            "instance-identity",
            "configuration",
            "executables",
            "file-system",
            "hardware",
            "runtime-opaque",
            "storage-opaque",
            "sourced-data",
        ] {
            let v = map.get(key).and_then(Value::as_i64).unwrap_or(0);
            if !(-128..=127).contains(&v) {
                return Err(format!("trust_vector.{key} = {v} is outside -128..127"));
            }
            vector.insert(key.to_string(), json!(v));
        }
        Ok(vector)
    }

    /// Evaluates `data.policy.allow`: true only if it is exactly `true`.
    pub fn allow(&self, input: &Input) -> Result<bool, String> {
        Ok(self.eval(input)? == Value::Bool(true))
    }
}

/// Most prepared policies kept (one per policy text × rule × data
/// document: attestation policies per reference-value set, the resource
/// policy per resource path).
const CACHE_ENTRIES: usize = 256;

struct CacheEntry {
    key: String,
    /// Shared by every entry of the same key (only one text per key is
    /// kept), so the cache holds each policy text once.
    text: Arc<str>,
    rule: Rule,
    data: Value,
    prepared: Prepared,
}

/// Prepared policies by (store key, text, rule, data document), compared
/// directly: a lookup runs on every policy use, and comparing the text and
/// the (small) data document costs less than hashing them did. Policies
/// and reference values are read from the store on every use (so every
/// replica sees changes at once); this cache only saves parsing and
/// analysis when neither changed. Oldest first out.
#[derive(Default)]
pub struct PolicyCache {
    entries: std::sync::Mutex<std::collections::VecDeque<CacheEntry>>,
}

impl std::fmt::Debug for PolicyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("PolicyCache").field("entries", &n).finish()
    }
}

impl PolicyCache {
    /// The policy `text` (stored under `key`) prepared for `rule` and
    /// `data`, from the cache or parsed and analysed now.
    pub fn prepared(
        &self,
        key: &str,
        text: &str,
        rule: Rule,
        data: &Value,
    ) -> Result<Prepared, String> {
        let hit =
            |e: &CacheEntry| e.key == key && e.rule == rule && *e.text == *text && e.data == *data;
        if let Ok(entries) = self.entries.lock()
            && let Some(e) = entries.iter().find(|e| hit(e))
        {
            return Ok(e.prepared.clone());
        }
        let prepared = Policy::compile(key, text)?.prepare(rule, data)?;
        if let Ok(mut entries) = self.entries.lock() {
            // An older text of the same policy is never used again.
            entries.retain(|e| e.key != key || *e.text == *text);
            if !entries.iter().any(hit) {
                if entries.len() >= CACHE_ENTRIES {
                    entries.pop_front();
                }
                let shared = entries
                    .iter()
                    .find(|e| e.key == key)
                    .map(|e| e.text.clone())
                    .unwrap_or_else(|| Arc::from(text));
                entries.push_back(CacheEntry {
                    key: key.to_string(),
                    text: shared,
                    rule,
                    data: data.clone(),
                    prepared: prepared.clone(),
                });
            }
        }
        Ok(prepared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snp_input(debug: bool, measurement: &str) -> Value {
        json!({"tee":"snp","claims":{"debug":debug,"measurement":measurement,
            "reported_tcb":{"bootloader":9,"tee":0,"snp":23,"microcode":72}}})
    }

    #[test]
    fn direct_conversion_matches_regorus_serde() {
        let v = json!({
            "n": null, "t": true, "f": false, "i": -42, "z": 0,
            "big": u64::MAX, "min": i64::MIN, "x": 1.5, "e": 1e300,
            "s": "héllo \u{1F600}", "empty": {}, "none": [],
            "nested": {"b": [1, "two", {"c": [null, 3.25]}], "a": {"k": "v"}}
        });
        let via_serde = <regorus::Value as serde::Deserialize>::deserialize(&v).unwrap();
        assert_eq!(to_rego(&v), via_serde);
        // And back to the same JSON.
        assert_eq!(serde_json::to_value(to_rego(&v)).unwrap(), v);
    }

    /// A token's policy input reuses the regorus form of the submods'
    /// claims made by the attestation policy; the result is the same as
    /// converting the whole EAR, in both claim-name forms, and the resource
    /// policy decides the same on it.
    #[test]
    fn ear_input_reuses_the_converted_claims() {
        use crate::token::{Submod, ear_claims};
        let attestation = Policy::compile("a", DEFAULT_ATTESTATION_POLICY)
            .unwrap()
            .prepare(Rule::TrustVector, &json!({}))
            .unwrap();
        let resource = Policy::compile("r", DEFAULT_RESOURCE_POLICY)
            .unwrap()
            .prepare(Rule::Allow, &json!({}))
            .unwrap();
        for dotted in [false, true] {
            let mut submods = Vec::new();
            for (name, claims) in [
                ("cpu0", snp_input(false, "aa")["claims"].clone()),
                ("gpu0", json!({"tee": "nvidia", "x": [1, {"y": null}]})),
            ] {
                let input = Input::appraisal("snp", claims.clone());
                let vector = attestation.trust_vector(&input).unwrap();
                let (back, rego) = input.into_claims();
                assert_eq!(back, claims);
                assert_eq!(rego.as_ref(), Some(&to_rego(&claims)));
                submods.push(Submod {
                    name: name.into(),
                    vector,
                    policy_id: "p".into(),
                    attester_claims: back,
                    // The second submod has none: converted in full.
                    attester_rego: rego.filter(|_| name == "cpu0"),
                });
            }
            let converted: BTreeMap<String, regorus::Value> = submods
                .iter_mut()
                .filter_map(|s| Some((s.name.clone(), s.attester_rego.take()?)))
                .collect();
            assert_eq!(converted.len(), 1);
            let ear = ear_claims(submods, "n", 100, 300, dotted);
            let input = ear_input(ear.clone(), &converted);
            assert_eq!(input.json(), Some(&ear));
            let via_serde = <regorus::Value as serde::Deserialize>::deserialize(&ear).unwrap();
            assert_eq!(input.rego(), &via_serde, "dotted: {dotted}");
            assert_eq!(
                resource.allow(&input).unwrap(),
                resource.allow(&Input::new(ear)).unwrap()
            );
        }
    }

    #[test]
    fn policy_cache_keys_on_text_rule_and_data() {
        let cache = PolicyCache::default();
        let program = |p: &Prepared| p.vm.as_ref().map(|v| Arc::as_ptr(&v.program));
        let data = json!({"reference": {"x": [1]}});
        let a = cache
            .prepared("k", DEFAULT_ATTESTATION_POLICY, Rule::TrustVector, &data)
            .unwrap();
        assert!(program(&a).is_some());
        // Same key, text, rule and data (an equal copy): the cached one.
        let again = cache
            .prepared(
                "k",
                String::from(DEFAULT_ATTESTATION_POLICY).as_str(),
                Rule::TrustVector,
                &data.clone(),
            )
            .unwrap();
        assert_eq!(program(&a), program(&again));
        // Other data: prepared again, kept beside, sharing the text.
        let other = cache
            .prepared(
                "k",
                DEFAULT_ATTESTATION_POLICY,
                Rule::TrustVector,
                &json!({}),
            )
            .unwrap();
        assert_ne!(program(&a), program(&other));
        {
            let entries = cache.entries.lock().unwrap();
            assert_eq!(entries.len(), 2);
            assert!(Arc::ptr_eq(&entries[0].text, &entries[1].text));
        }
        // A new text of the key replaces every entry of the old one.
        let text = format!("{DEFAULT_ATTESTATION_POLICY}\n# changed\n");
        let changed = cache
            .prepared("k", &text, Rule::TrustVector, &data)
            .unwrap();
        assert_ne!(program(&a), program(&changed));
        let entries = cache.entries.lock().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(&*entries[0].text, text.as_str());
    }

    #[test]
    fn default_policies_run_on_the_vm() {
        for (text, rule) in [
            (DEFAULT_ATTESTATION_POLICY, Rule::TrustVector),
            (DEFAULT_RESOURCE_POLICY, Rule::Allow),
        ] {
            let p = Policy::compile("p", text)
                .unwrap()
                .prepare(rule, &json!({}))
                .unwrap();
            assert!(p.vm.is_some(), "{rule:?}");
        }
    }

    #[test]
    fn default_attestation_policy() {
        let p = Policy::compile("default_cpu", DEFAULT_ATTESTATION_POLICY).unwrap();
        let v = p.trust_vector(&snp_input(false, "aa"), &json!({})).unwrap();
        assert_eq!(crate::token::ear_status(&v), "affirming");
        let v = p.trust_vector(&snp_input(true, "aa"), &json!({})).unwrap();
        assert_eq!(crate::token::ear_status(&v), "contraindicated");
        // Registered measurements must match.
        let rv = json!({"snp_measurement": ["bb"]});
        let v = p.trust_vector(&snp_input(false, "aa"), &rv).unwrap();
        assert_eq!(v["executables"], 96);
        let v = p.trust_vector(&snp_input(false, "bb"), &rv).unwrap();
        assert_eq!(crate::token::ear_status(&v), "affirming");
        // Minimum TCB.
        let rv = json!({"snp_min_tcb": [{"bootloader":9,"tee":0,"snp":24,"microcode":0}]});
        let v = p.trust_vector(&snp_input(false, "aa"), &rv).unwrap();
        assert_eq!(v["hardware"], 97);
        // Sample evidence is never affirming.
        let v = p
            .trust_vector(&json!({"tee":"sample","claims":{}}), &json!({}))
            .unwrap();
        assert_eq!(crate::token::ear_status(&v), "warning");
    }

    #[test]
    fn nitro_cca_and_gpu_appraisal() {
        let p = Policy::compile("default_cpu", DEFAULT_ATTESTATION_POLICY).unwrap();
        let status = |input: Value, rv: Value| {
            let v = p.trust_vector(&input, &rv).unwrap();
            crate::token::ear_status(&v).to_string()
        };
        // Nitro: debug enclaves are contraindicated; PCRs and the image
        // measurement (PCR0) against registered values.
        let nitro = |debug: bool| json!({"tee":"nitro","claims":{"debug":debug,"measurement":"aa","pcrs":{"0":"aa","8":"cc"}}});
        assert_eq!(status(nitro(false), json!({})), "affirming");
        assert_eq!(status(nitro(true), json!({})), "contraindicated");
        assert_eq!(
            status(nitro(false), json!({"nitro_pcr8": ["cc"]})),
            "affirming"
        );
        assert_eq!(
            status(nitro(false), json!({"nitro_pcr8": ["dd"]})),
            "contraindicated"
        );
        assert_eq!(
            status(nitro(false), json!({"nitro_measurement": ["bb"]})),
            "contraindicated"
        );
        // CCA: only a secured lifecycle state; the RIM as the measurement.
        let cca = |secured: bool| json!({"tee":"cca","claims":{"platform_secured":secured,"measurement":"aa"}});
        assert_eq!(status(cca(true), json!({})), "affirming");
        assert_eq!(status(cca(false), json!({})), "contraindicated");
        assert_eq!(
            status(cca(true), json!({"cca_measurement": ["bb"]})),
            "contraindicated"
        );
        // GPUs: driver/VBIOS versions and measurement blocks when registered;
        // GPU reference values never affect CPU appraisal.
        let gpu = json!({"tee":"nvidia","claims":{"driver_version":"550.90.07",
            "vbios_version":"96.00.9f.00.01","measurements":{"1":"aa","2":"bb"}}});
        assert_eq!(status(gpu.clone(), json!({})), "affirming");
        assert_eq!(
            status(
                gpu.clone(),
                json!({"nvidia_driver_version": ["550.90.07"], "nvidia_measurement2": ["bb"]})
            ),
            "affirming"
        );
        assert_eq!(
            status(
                gpu.clone(),
                json!({"nvidia_vbios_version": ["96.00.74.00.1a"]})
            ),
            "contraindicated"
        );
        assert_eq!(
            status(gpu.clone(), json!({"nvidia_measurement1": ["bb"]})),
            "contraindicated"
        );
        assert_eq!(
            status(gpu, json!({"nvidia_measurement7": ["bb"]})),
            "contraindicated"
        );
        assert_eq!(
            status(
                snp_input(false, "aa"),
                json!({"nvidia_measurement1": ["bb"], "nvidia_driver_version": ["1"]})
            ),
            "affirming"
        );
    }

    #[test]
    fn tdx_tcb_status() {
        let p = Policy::compile("default_cpu", DEFAULT_ATTESTATION_POLICY).unwrap();
        let input = |status: &str| json!({"tee":"tdx","claims":{"debug":false,"measurement":"aa","tcb_status":status}});
        let v = p.trust_vector(&input("UpToDate"), &json!({})).unwrap();
        assert_eq!(crate::token::ear_status(&v), "affirming");
        let v = p.trust_vector(&input("OutOfDate"), &json!({})).unwrap();
        assert_eq!(v["hardware"], 97);
        let rv = json!({"tdx_accepted_tcb_status": ["UpToDate", "OutOfDate"]});
        let v = p.trust_vector(&input("OutOfDate"), &rv).unwrap();
        assert_eq!(crate::token::ear_status(&v), "affirming");
        let v = p
            .trust_vector(&input("UpToDate"), &json!({"tdx_measurement": ["bb"]}))
            .unwrap();
        assert_eq!(v["executables"], 96);
    }

    #[test]
    fn tpm_pcr_reference_values() {
        let p = Policy::compile("default_cpu", DEFAULT_ATTESTATION_POLICY).unwrap();
        let tpm = json!({"tee":"tpm","claims":{"tee":"tpm","tpm":{"pcrs":{"sha256":{"0":"aa","4":"bb"}}}}});
        let v = p.trust_vector(&tpm, &json!({})).unwrap();
        assert_eq!(crate::token::ear_status(&v), "affirming");
        assert_eq!(v["runtime-opaque"], 0);
        let v = p
            .trust_vector(&tpm, &json!({"tpm_pcr4": ["bb", "cc"]}))
            .unwrap();
        assert_eq!(v["executables"], 2);
        let v = p.trust_vector(&tpm, &json!({"tpm_pcr4": ["cc"]})).unwrap();
        assert_eq!(v["executables"], 96);
        // A PCR that is not quoted cannot match.
        let v = p.trust_vector(&tpm, &json!({"tpm_pcr9": ["aa"]})).unwrap();
        assert_eq!(v["executables"], 96);
        // SecureBoot from the event log, when registered.
        let sb = |on: bool| json!({"tee":"tpm","claims":{"tee":"tpm","tpm":{"pcrs":{},"event_log":{"secure_boot":on}}}});
        let rv = json!({"tpm_secure_boot": [true]});
        assert_eq!(p.trust_vector(&sb(true), &rv).unwrap()["configuration"], 2);
        assert_eq!(
            p.trust_vector(&sb(false), &rv).unwrap()["configuration"],
            96
        );
        assert_eq!(p.trust_vector(&tpm, &rv).unwrap()["configuration"], 96);
        // Other TEEs' PCR values do not apply.
        let v = p
            .trust_vector(&tpm, &json!({"az-snp-vtpm_pcr4": ["cc"]}))
            .unwrap();
        assert_eq!(v["executables"], 2);
        // Azure: the SNP rules and the PCRs together.
        let az = json!({"tee":"az-snp-vtpm","claims":{"debug":false,"measurement":"mm",
            "reported_tcb":{"bootloader":9,"tee":0,"snp":23,"microcode":72},
            "tpm":{"pcrs":{"sha256":{"4":"bb"}}}}});
        let v = p
            .trust_vector(&az, &json!({"az-snp-vtpm_pcr4": ["bb"]}))
            .unwrap();
        assert_eq!(crate::token::ear_status(&v), "affirming");
        assert_eq!(v["runtime-opaque"], 2);
        let v = p
            .trust_vector(&az, &json!({"az-snp-vtpm_measurement": ["xx"]}))
            .unwrap();
        assert_eq!(v["executables"], 96);
    }

    #[test]
    fn default_resource_policy() {
        let p = Policy::compile("resource", DEFAULT_RESOURCE_POLICY).unwrap();
        let data = json!({"plugin":"resource","resource-path":["default","key","1"]});
        let token = |status: &str, tee: &str| json!({"submods":{"cpu0":{"ear_status":status,"ear_attester_claims":{"tee":tee}}}});
        assert!(p.allow(&token("affirming", "snp"), &data).unwrap());
        assert!(!p.allow(&token("warning", "snp"), &data).unwrap());
        assert!(!p.allow(&token("affirming", "sample"), &data).unwrap());
        assert!(!p.allow(&json!({"submods":{}}), &data).unwrap());
        assert!(
            !p.allow(&token("affirming", "snp"), &json!({"plugin":"other"}))
                .unwrap()
        );
    }

    #[test]
    fn undefined_allow_denies_and_bad_rego_is_refused() {
        let p = Policy::compile("x", "package policy\n").unwrap();
        assert!(!p.allow(&json!({}), &json!({})).unwrap());
        assert!(Policy::compile("y", "package policy\nallow if {").is_err());
        let p = Policy::compile("z", "package policy\nallow := \"yes\"\n").unwrap();
        assert!(!p.allow(&json!({}), &json!({})).unwrap());
    }
}
