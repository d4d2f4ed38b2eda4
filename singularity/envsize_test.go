package singularity

import (
	"fmt"
	"strings"
	"testing"
)

// One entry must fit Linux's MAX_ARG_STRLEN as APPTAINERENV_KEY=VALUE, and
// all of them, JSON-encoded, Apptainer's 1 MiB engine configuration.
func TestValidateEnvSize(t *testing.T) {
	fits := "A=" + strings.Repeat("a", maxEnvEntry-len("APPTAINERENV_A=")-1)
	if err := ValidateEnvSize([]string{fits, "B=1"}); err != nil {
		t.Errorf("an entry that just fits: %v", err)
	}
	if err := ValidateEnvSize([]string{fits + "a"}); err == nil || !strings.Contains(err.Error(), `variable "A": its value is 131057 bytes`) {
		t.Errorf("one byte over: %v", err)
	}
	var many []string
	for i := range 8 {
		many = append(many, fmt.Sprintf("V%d=%s", i, strings.Repeat("b", 120000)))
	}
	if err := ValidateEnvSize(many); err != nil {
		t.Errorf("8 values of 120000 bytes (measured to work): %v", err)
	}
	// JSON escapes count: '<' takes 6 bytes in the configuration.
	many = append(many, "X="+strings.Repeat("<", 10000))
	if err := ValidateEnvSize(many); err == nil || !strings.Contains(err.Error(), "configuration it limits to 1 MiB") {
		t.Errorf("over the configuration's size: %v", err)
	}
}
