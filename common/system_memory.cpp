#include "common/system_memory.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace pagedllm {

namespace {

uint64_t meminfo_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  std::string unit;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return value * 1024;
  }
  return 0;
}

// A cgroup v2 memory.max minus memory.current, for containers that see the host's /proc/meminfo.
uint64_t cgroup_available() {
  std::ifstream max_file("/sys/fs/cgroup/memory.max");
  std::ifstream current_file("/sys/fs/cgroup/memory.current");
  std::string max_text;
  uint64_t current = 0;
  if (!(max_file >> max_text) || !(current_file >> current) || max_text == "max") return 0;
  const uint64_t limit = std::stoull(max_text);
  return limit > current ? limit - current : 0;
}

}  // namespace

uint64_t available_memory_bytes() {
  const uint64_t meminfo = meminfo_available();
  uint64_t cgroup = 0;
  try {
    cgroup = cgroup_available();
  } catch (...) {
    cgroup = 0;
  }
  if (meminfo == 0) return cgroup;
  if (cgroup == 0) return meminfo;
  return meminfo < cgroup ? meminfo : cgroup;
}

}  // namespace pagedllm
