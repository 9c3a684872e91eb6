# Sourced by scripts/cluster.sh and scripts/e2e.sh: the CPU cgroup a test
# node's service runs in (v2, or v1 cpu + cpuacct), half a core.
cgroup_dirs() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo "/sys/fs/cgroup/$1"
  else echo "/sys/fs/cgroup/cpu/$1 /sys/fs/cgroup/cpuacct/$1"; fi
}
cgroup_create() {
  local d
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
  fi
  for d in $(cgroup_dirs "$1"); do mkdir -p "$d" 2>/dev/null || true; done
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo "50000 100000" > "/sys/fs/cgroup/$1/cpu.max" 2>/dev/null || true
  else
    echo 100000 > "/sys/fs/cgroup/cpu/$1/cpu.cfs_period_us" 2>/dev/null || true
    echo 50000 > "/sys/fs/cgroup/cpu/$1/cpu.cfs_quota_us" 2>/dev/null || true
  fi
}
cgroup_add() {  # cgroup_add NAME PID
  local d
  for d in $(cgroup_dirs "$1"); do echo "$2" > "$d/cgroup.procs" 2>/dev/null || true; done
}
