package compose

import (
	"reflect"
	"strings"
)

// Why sstack ignores a key; shared by keys with the same cause.
const (
	reasonOneNetwork  = "a replica on the stack network has one interface, eth0, with one address of 10.0.2.0/24 (on the host's network, the host's)"
	reasonNoLimitFlag = "Apptainer has no flag for this limit"
	reasonNamespaces  = "apptainer chooses the instance's namespaces"
	reasonPrivileges  = "apptainer runs the service as the user who runs sstack, with no extra privileges"
	reasonDNS         = "the stack's DNS server answers every replica (forwarding other names to the host's resolvers); on the host's network, the host's DNS configuration"
	reasonDevices     = "devices are not mapped: the instance sees the host's /dev"
	reasonMetadata    = "instances carry no labels or annotations"
	reasonLogging     = "service output goes to sstack's output"
	reasonHooks       = "lifecycle hooks are not run"
)

// unsupportedServiceKeys lists every service key sstack ignores whenever it
// is set, with the reason given in the warning. Keys sstack translates, or
// ignores only for some values, are in translatedServiceKeys; a test checks
// that the two lists cover every key compose-go knows.
var unsupportedServiceKeys = map[string]string{
	"annotations":         reasonMetadata,
	"attach":              "the output of every service is shown",
	"cap_add":             reasonPrivileges,
	"cap_drop":            reasonPrivileges,
	"cgroup":              reasonNamespaces,
	"cgroup_parent":       "apptainer puts each instance in a cgroup of its own (/apptainer/<pid>)",
	"cpu_count":           "a Windows-only limit; cpus: limits the CPUs",
	"cpu_percent":         "a Windows-only limit; cpus: limits the CPUs",
	"cpu_period":          "Apptainer sets the CPU quota only as a number of CPUs: write cpus: QUOTA/PERIOD (e.g. cpus: 0.5)",
	"cpu_quota":           "Apptainer sets the CPU quota only as a number of CPUs: write cpus: QUOTA/PERIOD (e.g. cpus: 0.5)",
	"cpu_rt_period":       reasonNoLimitFlag,
	"cpu_rt_runtime":      reasonNoLimitFlag,
	"credential_spec":     "credential specs exist on Windows only",
	"develop":             "sstack has no watch mode",
	"device_cgroup_rules": reasonDevices,
	"devices":             reasonDevices,
	"dns":                 reasonDNS,
	"dns_opt":             reasonDNS,
	"dns_search":          reasonDNS,
	"dockerfile":          "not used: name the build file in build.dockerfile",
	"domainname":          "not set: Apptainer cannot set an instance's domain name (an unprivileged user cannot write it even in the instance's own UTS namespace; measured); give the full name as hostname: NAME.DOMAIN",
	"external_links":      "there are no containers outside the project to link to",
	"group_add":           reasonPrivileges,
	"isolation":           reasonNamespaces,
	"label_file":          reasonMetadata,
	"labels":              reasonMetadata,
	"log_driver":          reasonLogging,
	"log_opt":             reasonLogging,
	"logging":             reasonLogging,
	"mac_address":         reasonOneNetwork,
	"mem_swappiness":      reasonNoLimitFlag,
	"models":              "sstack provides no AI models",
	"net":                 reasonOneNetwork,
	"oom_score_adj":       "Apptainer cannot set the OOM score of an instance",
	"pid":                 reasonNamespaces,
	"platform":            "the SIF is used as it is; no platform is selected",
	"post_start":          reasonHooks,
	"pre_start":           reasonHooks,
	"pre_stop":            reasonHooks,
	"privileged":          reasonPrivileges,
	"shm_size":            "Apptainer cannot size /dev/shm of an instance",
	"storage_opt":         "volumes are plain directories under the state directory",
	"sysctls":             "kernel parameters cannot be set for an instance",
	"umask":               "the umask is inherited from sstack",
	"use_api_socket":      "there is no Docker API socket",
	"user":                reasonPrivileges,
	"userns_mode":         reasonNamespaces,
	"uts":                 reasonNamespaces,
	"volume_driver":       "volumes are plain directories under the state directory",
}

// translatedServiceKeys are the service keys Translate reads (some warn for
// particular values, e.g. network_mode other than host).
var translatedServiceKeys = append(append([]string{
	"build", "command", "configs", "container_name", "depends_on", "deploy",
	"entrypoint", "env_file", "environment", "expose", "extends", "extra_hosts",
	"healthcheck", "hostname", "image", "init", "ipc", "links", "name", "network_mode",
	"networks", "ports", "profiles", "provider", "pull_policy", "pull_refresh_after",
	"read_only", "restart", "scale", "secrets", "security_opt", "stop_grace_period",
	"stdin_open", "stop_signal", "tmpfs", "tty", "ulimits", "volumes",
	"volumes_from", "working_dir",
}, resourceKeys...), gpuKeys...)

// Deploy keys: replicas, restart_policy and resources are translated,
// mode is for values other than "replicated".
var unsupportedDeployKeys = map[string]string{
	"endpoint_mode": reasonOneNetwork,
	"labels":        reasonMetadata,
}

// setKeys returns the keys of table that are set in v (a struct), in the
// order of the struct's fields. A key is set when its field is not the
// zero value, as compose-go leaves unset keys zero; `privileged: false`
// thus goes unnoticed, which is right, since that is what sstack does.
func setKeys(v any, table map[string]string) []string {
	var keys []string
	walkYAMLFields(reflect.ValueOf(v), func(key string, f reflect.Value) {
		if _, ok := table[key]; ok && !f.IsZero() {
			keys = append(keys, key)
		}
	})
	return keys
}

// walkYAMLFields calls fn for every field of struct v that has a YAML key,
// descending into inlined (embedded) structs.
func walkYAMLFields(v reflect.Value, fn func(key string, f reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case strings.Contains(opts, "inline") && sf.Type.Kind() == reflect.Struct:
			walkYAMLFields(v.Field(i), fn)
		case name == "" || name == "-" || strings.HasPrefix(name, "#"):
		default:
			fn(name, v.Field(i))
		}
	}
}
