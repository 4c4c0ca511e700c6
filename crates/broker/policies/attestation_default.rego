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

# SNP (bare or under Azure's paravisor): reported TCB at least the
# registered minimum (`snp_min_tcb`, if any).
tcb_ok if {
	input.tee in {"snp", "az-snp-vtpm"}
	not data.reference.snp_min_tcb
}

tcb_ok if {
	input.tee in {"snp", "az-snp-vtpm"}
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
	input.tee in {"tdx", "sgx", "az-tdx-vtpm"}
	input.claims.tcb_status in accepted_dcap_status
}

# A TPM's hardware claim is its attestation key, which the verifier
# accepted only when certified or allow-listed.
tcb_ok if input.tee == "tpm"

# Nitro: the document chains to the pinned AWS root (the verifier's job).
tcb_ok if input.tee == "nitro"

# CCA: the platform must be in a "secured" lifecycle state.
tcb_ok if {
	input.tee == "cca"
	input.claims.platform_secured == true
}

# NVIDIA GPUs: the driver and VBIOS versions must be registered ones
# (`nvidia_driver_version`, `nvidia_vbios_version`) when any are; with a
# `nvidia_require_ocsp` reference value registered, every certificate of
# the GPU's chain must have been confirmed good by OCSP (a revoked one is
# rejected by the verifier in any case).
tcb_ok if {
	input.tee == "nvidia"
	version_ok("driver_version")
	version_ok("vbios_version")
	ocsp_ok
}

ocsp_ok if not data.reference.nvidia_require_ocsp

ocsp_ok if input.claims.ocsp.status == "good"

version_ok(name) if not data.reference[sprintf("nvidia_%s", [name])]

version_ok(name) if input.claims[name] in data.reference[sprintf("nvidia_%s", [name])]

# Configuration: debug must be off.
default configuration := 96

configuration := 2 if input.claims.debug == false

# A TPM quote says nothing about debug; its PCRs are appraised below, and
# when `tpm_secure_boot` values are registered, the SecureBoot state from
# the replayed event log must be one of them.
configuration := 2 if {
	input.tee == "tpm"
	secure_boot_ok
}

secure_boot_ok if not data.reference[sprintf("%s_secure_boot", [input.tee])]

secure_boot_ok if {
	input.claims.tpm.event_log.secure_boot in data.reference[sprintf("%s_secure_boot", [input.tee])]
}

# CCA and GPU evidence carries no debug switch (the CCA lifecycle state is
# appraised under hardware).
configuration := 2 if input.tee in {"cca", "nvidia"}

configuration := 0 if input.tee == "sample"

# Executables: the launch measurement must equal a registered reference
# value when any are registered for this TEE (`<tee>_measurement`), and
# for TPM-based and Nitro evidence every PCR with registered values
# (`<tee>_pcr<N>`, e.g. `az-snp-vtpm_pcr4`, `nitro_pcr8`) must equal one of
# them (TPMs: the SHA-256 bank).
default executables := 96

measurement_ok if not data.reference[sprintf("%s_measurement", [input.tee])]

measurement_ok if {
	input.claims.measurement in data.reference[sprintf("%s_measurement", [input.tee])]
}

pcr_prefix := sprintf("%s_pcr", [input.tee])

pcrs_ok if {
	every name, values in data.reference {
		pcr_matches(name, values)
	}
}

pcr_matches(name, _) if not startswith(name, pcr_prefix)

pcr_matches(name, values) if {
	startswith(name, pcr_prefix)
	index := trim_prefix(name, pcr_prefix)
	pcr_value(index) in values
}

pcr_value(index) := input.claims.pcrs[index] if input.tee == "nitro"

pcr_value(index) := input.claims.tpm.pcrs.sha256[index] if input.tee != "nitro"

# GPUs: every measurement block with registered values
# (`nvidia_measurement<N>`, e.g. from NVIDIA's reference integrity
# manifests) must equal one of them.
gpu_measurements_ok if input.tee != "nvidia"

gpu_measurements_ok if {
	input.tee == "nvidia"
	rim_ok
	every name, values in data.reference {
		gpu_measurement_matches(name, values)
	}
}

# Reference integrity manifests, when the broker has any, must match.
rim_ok if not is_object(input.claims.rim)

rim_ok if input.claims.rim.status == "match"

gpu_measurement_matches(name, _) if not startswith(name, "nvidia_measurement")

gpu_measurement_matches(name, values) if {
	startswith(name, "nvidia_measurement")
	input.claims.measurements[trim_prefix(name, "nvidia_measurement")] in values
}

executables := 2 if {
	measurement_ok
	pcrs_ok
	gpu_measurements_ok
}

# Instance identity: the report is signed by a key bound to the platform.
default instance_identity := 0

instance_identity := 2 if input.tee != "sample"

# Memory is encrypted by the TEE (a bare TPM encrypts nothing).
default runtime_opaque := 0

runtime_opaque := 2 if not input.tee in {"sample", "tpm"}

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
