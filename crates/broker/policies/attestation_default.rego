# Veil's default attestation (appraisal) policy.
#
# Input:  {"tee": "<tee>", "claims": {...verified claims...}}
# Data:   {"reference": {"<name>": [values...]}}  (registered reference values, unexpired)
# Output: data.policy.trust_vector, an AR4SI trustworthiness vector.
#
# AR4SI tiers: 0 no claim; 2..31 affirming; 32..95 warning; 96..127 contraindicated.
# The EAR status is the worst tier present.
package policy

import rego.v1

# Hardware: a genuine chain was verified (the verifier guarantees it) and the
# TCB is at least the registered minimum (`<tee>_min_tcb`), if one is.
default hardware := 97

hardware := 2 if {
	input.tee != "sample"
	tcb_ok
}

hardware := 32 if input.tee == "sample"

# SNP: reported TCB at least the registered minimum (if any).
tcb_ok if {
	input.tee == "snp"
	not data.reference.snp_min_tcb
}

tcb_ok if {
	input.tee == "snp"
	some min in data.reference.snp_min_tcb
	tcb := input.claims.reported_tcb
	tcb.bootloader >= min.bootloader
	tcb.tee >= min.tee
	tcb.snp >= min.snp
	tcb.microcode >= min.microcode
}

# TDX and SGX: Intel's TCB status must be UpToDate, or one of the statuses
# registered as `<tee>_accepted_tcb_status`.
default accepted_dcap_status := ["UpToDate"]

accepted_dcap_status := data.reference[sprintf("%s_accepted_tcb_status", [input.tee])] if {
	data.reference[sprintf("%s_accepted_tcb_status", [input.tee])]
}

tcb_ok if {
	input.tee in {"tdx", "sgx"}
	input.claims.tcb_status in accepted_dcap_status
}

# Configuration: debug must be off.
default configuration := 96

configuration := 2 if input.claims.debug == false

configuration := 0 if input.tee == "sample"

# Executables: the launch measurement must equal a registered reference
# value when any are registered for this TEE (`<tee>_measurement`).
default executables := 96

executables := 2 if not data.reference[sprintf("%s_measurement", [input.tee])]

executables := 2 if {
	input.claims.measurement in data.reference[sprintf("%s_measurement", [input.tee])]
}

# Instance identity: the report is signed by a key bound to the platform.
default instance_identity := 0

instance_identity := 2 if input.tee != "sample"

# Memory is encrypted by the TEE.
default runtime_opaque := 0

runtime_opaque := 2 if input.tee != "sample"

trust_vector := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"file-system": 0,
	"hardware": hardware,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": 0,
	"sourced-data": 0,
}
