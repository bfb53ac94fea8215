#!/usr/bin/env bash
# Builds the real upstream binaries the end-to-end harness needs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kubelet, etcd, etcdctl, helm, Multus,
# CNI reference plugins) from the Go module proxy into a content-addressed cache directory.
#
# stdout: exactly one line, the absolute path of the finished bin directory.
# stderr: progress.
#
# Env:
#   MULTUS_E2E_CACHE  cache root (default: $HOME/.cache/multus-operator-e2e)
#
# The versions live in the go.mod files of the sub-modules next to this script;
# every version string baked into the binaries is derived from them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

log() { printf '[e2e-testenv] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go not found in PATH (need Go >= 1.26)"

# multus-v*: older Multus releases, each shown failing in e2e/tests/upstream_failures.rs.
multus_releases=(v4.0.2 v4.1.0)
modules=(kube etcd helm multus plugins)
for r in "${multus_releases[@]}"; do modules+=("multus-$r"); done

# ---- cache key: sha256 over build.sh and every go.mod/go.sum (path + content)
key="$(
	for f in build.sh $(for m in "${modules[@]}"; do printf '%s/go.mod %s/go.sum ' "$m" "$m"; done); do
		[[ -f $f ]] || die "missing $here/$f"
		printf '%s\n' "$f"
		sha256sum <"$f"
	done | sha256sum | cut -c1-16
)"
cache_root="${MULTUS_E2E_CACHE:-$HOME/.cache/multus-operator-e2e}"
out="$cache_root/bin-$key"

if [[ -f $out/.complete ]]; then
	printf '%s\n' "$out"
	exit 0
fi

mkdir -p "$cache_root"
# Serialise concurrent callers (e.g. parallel test binaries) on the same key.
exec 9>"$out.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
	log "another build holds $out.lock; waiting"
	flock 9
fi
if [[ -f $out/.complete ]]; then
	printf '%s\n' "$out"
	exit 0
fi

tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"

export CGO_ENABLED=0
export GO111MODULE=on
gobuild_flags=(-trimpath -buildvcs=false -mod=readonly)

modver() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }
modtime() { (cd "$here/$1" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$2"); }
# Commit the module proxy recorded for a tag (only some proxies record it).
modcommit() {
	local info
	info="$(go env GOMODCACHE)/cache/download/$2/@v/$3.info"
	sed -n 's/.*"Hash":"\([0-9a-f]*\)".*/\1/p' "$info" 2>/dev/null || true
}

# ---- versions (from go.mod) and ldflags
kube_ver="$(modver kube k8s.io/kubernetes)"           # e.g. v1.37.2
kube_date="${SOURCE_DATE_EPOCH:+$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)}"
kube_date="${kube_date:-$(modtime kube k8s.io/kubernetes)}" # tag time: reproducible
kube_major="${kube_ver#v}"; kube_major="${kube_major%%.*}"
kube_minor="${kube_ver#v*.}"; kube_minor="${kube_minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kube_ldflags+=" -X $pkg.gitVersion=$kube_ver -X $pkg.gitMajor=$kube_major -X $pkg.gitMinor=$kube_minor"
	kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$kube_date"
done

etcd_ver="$(modver etcd go.etcd.io/etcd/server/v3)"
# etcd's own build only adds GitSHA, which the module proxy does not record;
# the version itself (version.Version) is a constant in go.etcd.io/etcd/api/v3.
etcd_ldflags="-s -w"

helm_ver="$(modver helm helm.sh/helm/v3)"
helm_k8s="$(modver helm k8s.io/client-go)"   # v0.X.Y -> k8s 1.X, as helm's Makefile does
helm_k8s_minor="${helm_k8s#v0.}"; helm_k8s_minor="${helm_k8s_minor%%.*}"
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_ver"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
	helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
done

multus_mod=gopkg.in/k8snetworkplumbingwg/multus-cni.v4
multus_ver="$(modver multus "$multus_mod")"
multus_commit="$(modcommit multus "$multus_mod" "$multus_ver")"
multus_ldflags="-s -w"
multus_ldflags+=" -X $multus_mod/pkg/multus.version=$multus_ver"
multus_ldflags+=" -X $multus_mod/pkg/multus.commit=${multus_commit:-unknown}"
multus_ldflags+=" -X $multus_mod/pkg/multus.gitTreeState=clean"
multus_ldflags+=" -X $multus_mod/pkg/multus.releaseStatus=,released"
multus_ldflags+=" -X $multus_mod/pkg/multus.date=$(modtime multus "$multus_mod")"
# The same flags for an older release, built from its own module e2e/testenv/multus-<release>/.
release_ldflags() {
	local dir="multus-$1" ver commit
	ver="$(modver "$dir" "$multus_mod")"
	commit="$(modcommit "$dir" "$multus_mod" "$ver")"
	printf -- '-s -w -X %s/pkg/multus.version=%s -X %s/pkg/multus.commit=%s' \
		"$multus_mod" "$ver" "$multus_mod" "${commit:-unknown}"
	printf -- ' -X %s/pkg/multus.gitTreeState=clean -X %s/pkg/multus.releaseStatus=,released' \
		"$multus_mod" "$multus_mod"
	printf -- ' -X %s/pkg/multus.date=%s' "$multus_mod" "$(modtime "$dir" "$multus_mod")"
}

plugins_mod=github.com/containernetworking/plugins
plugins_ver="$(modver plugins "$plugins_mod")"
plugins_ldflags="-s -w -X $plugins_mod/pkg/utils/buildversion.BuildVersion=$plugins_ver"

# ---- what to build: "binary|module dir|package|ldflags var"
targets=(
	"kube-apiserver|kube|k8s.io/kubernetes/cmd/kube-apiserver|kube_ldflags"
	"kube-controller-manager|kube|k8s.io/kubernetes/cmd/kube-controller-manager|kube_ldflags"
	"kube-scheduler|kube|k8s.io/kubernetes/cmd/kube-scheduler|kube_ldflags"
	"kubectl|kube|k8s.io/kubernetes/cmd/kubectl|kube_ldflags"
	"kubelet|kube|k8s.io/kubernetes/cmd/kubelet|kube_ldflags"
	"etcd|etcd|go.etcd.io/etcd/server/v3|etcd_ldflags"
	"etcdctl|etcd|go.etcd.io/etcd/etcdctl/v3|etcd_ldflags"
	"helm|helm|helm.sh/helm/v3/cmd/helm|helm_ldflags"
)
for c in multus multus-daemon multus-shim install_multus thin_entrypoint kubeconfig_generator; do
	targets+=("$c|multus|$multus_mod/cmd/$c|multus_ldflags")
done
# install_multus copies bin/passthru next to the Multus binary; upstream's hack/build-go.sh
# builds it from cmd/passthru-cni under that name.
targets+=("passthru|multus|$multus_mod/cmd/passthru-cni|multus_ldflags")
# Older releases land in a sub-directory named after the release, e.g. multus-v4.0.2/multus.
# v4.0.2: thin entrypoint and plugin (#1295 kubeconfig only in auto mode, #1130 self-delegation).
# v4.1.0: thick daemon and shim (#1362 confDir dropped from the daemon config).
multus_v4_0_2_ldflags="$(release_ldflags v4.0.2)"
multus_v4_1_0_ldflags="$(release_ldflags v4.1.0)"
for c in thin_entrypoint multus; do
	targets+=("multus-v4.0.2/$c|multus-v4.0.2|$multus_mod/cmd/$c|multus_v4_0_2_ldflags")
done
for c in multus-daemon multus-shim; do
	targets+=("multus-v4.1.0/$c|multus-v4.1.0|$multus_mod/cmd/$c|multus_v4_1_0_ldflags")
done
for p in main/bridge main/macvlan main/ipvlan main/loopback main/ptp ipam/host-local ipam/static meta/tuning; do
	targets+=("cni/${p##*/}|plugins|$plugins_mod/plugins/$p|plugins_ldflags")
done

log "cache miss: building ${#targets[@]} binaries into $out"
log "versions: kubernetes $kube_ver, etcd $etcd_ver, helm $helm_ver, multus $multus_ver, cni-plugins $plugins_ver ($(go version))"

mkdir -p "$tmp/cni"
for r in "${multus_releases[@]}"; do mkdir -p "$tmp/multus-$r"; done
t_start=$SECONDS
timings=()
i=0
for t in "${targets[@]}"; do
	IFS='|' read -r bin mod pkg ldvar <<<"$t"
	i=$((i + 1))
	t0=$SECONDS
	log "building $bin ($i/${#targets[@]})... [${t0}s elapsed]"
	(cd "$here/$mod" && go build "${gobuild_flags[@]}" -ldflags "${!ldvar}" -o "$tmp/$bin" "$pkg") >&2 ||
		die "go build of $bin ($pkg in $mod/) failed"
	dt=$((SECONDS - t0))
	timings+=("$bin ${dt}s")
	log "built $bin in ${dt}s [$((SECONDS - t_start))s total]"
done

total=$((SECONDS - t_start))
{
	printf 'kubernetes %s\netcd %s\nhelm %s\nmultus-cni %s (commit %s)\ncni-plugins %s\n' \
		"$kube_ver" "$etcd_ver" "$helm_ver" "$multus_ver" "${multus_commit:-unknown}" "$plugins_ver"
	for r in "${multus_releases[@]}"; do
		printf 'multus-cni %s in multus-%s/\n' "$(modver "multus-$r" "$multus_mod")" "$r"
	done
	go version
	printf 'built %s in %ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$total"
	printf '  %s\n' "${timings[@]}"
} >"$tmp/BUILD-INFO"

rm -rf "$out"
mv "$tmp" "$out"
touch "$out/.complete"
log "done in ${total}s: $out"
printf '%s\n' "$out"
