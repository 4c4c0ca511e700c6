//! Rego policies (regorus): the attestation policy turns verified claims
//! into an AR4SI trustworthiness vector; the resource policy decides, from a
//! token's claims, whether a resource may be released (`data.policy.allow`,
//! denied when undefined or not `true`).

use serde_json::{Map, Value, json};

/// The built-in attestation policy.
pub const DEFAULT_ATTESTATION_POLICY: &str = include_str!("../policies/attestation_default.rego");
/// The built-in resource policy.
pub const DEFAULT_RESOURCE_POLICY: &str = include_str!("../policies/resource_default.rego");
/// The id of the default CPU attestation policy.
pub const DEFAULT_CPU_POLICY_ID: &str = "default_cpu";

/// A compiled policy, cloned per evaluation.
#[derive(Debug, Clone)]
pub struct Policy {
    engine: regorus::Engine,
}

impl Policy {
    /// Parses and compiles Rego text.
    pub fn compile(id: &str, rego: &str) -> Result<Self, String> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(format!("{id}.rego"), rego.to_string())
            .map_err(|e| format!("policy {id}: {e}"))?;
        Ok(Policy { engine })
    }

    fn eval(&self, rule: &str, input: &Value, data: &Value) -> Result<Value, String> {
        let mut engine = self.engine.clone();
        engine
            .set_input_json(&input.to_string())
            .map_err(|e| e.to_string())?;
        engine
            .add_data_json(&data.to_string())
            .map_err(|e| e.to_string())?;
        // A query, not eval_rule: a rule the policy does not define is
        // "undefined" (no result), which callers treat as deny.
        let results = engine
            .eval_query(rule.to_string(), false)
            .map_err(|e| e.to_string())?;
        let Some(v) = results
            .result
            .into_iter()
            .next()
            .and_then(|r| r.expressions.into_iter().next())
            .map(|e| e.value)
        else {
            return Ok(Value::Null);
        };
        if v == regorus::Value::Undefined {
            return Ok(Value::Null);
        }
        let text = v.to_json_str().map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// Evaluates `data.policy.trust_vector`. Missing or malformed entries
    /// make the vector contraindicated in hardware (deny by default).
    pub fn trust_vector(
        &self,
        input: &Value,
        reference: &Value,
    ) -> Result<Map<String, Value>, String> {
        let out = self.eval(
            "data.policy.trust_vector",
            input,
            &json!({"reference": reference}),
        )?;
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
    pub fn allow(&self, input: &Value, data: &Value) -> Result<bool, String> {
        Ok(self.eval("data.policy.allow", input, data)? == Value::Bool(true))
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
