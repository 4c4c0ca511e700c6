# Veil's default resource policy.
#
# Input: the attestation token's claims (EAR).
# Data:  {"plugin": "resource", "resource-path": [repo, type, tag]}
# Allow only when every submod is affirming and none is `sample` evidence.
package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	count(input.submods) > 0
	every _, submod in input.submods {
		submod.ear_status == "affirming"
		submod.ear_attester_claims.tee != "sample"
	}
}
