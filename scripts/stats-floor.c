/*
 * The kernel's floor for a steady cycle, for scripts/bench-steady-cpu.sh: one socket opened
 * inside each pod namespace (/run/netns/<prefix>NNNN, eth0), then, once a second, one
 * RTM_GETSTATS (IFLA_STATS_LINK_64) request and its answer per pod -- what netshim's steady
 * cycle asks, and nothing else. Prints the process's CPU per cycle (CLOCK_PROCESS_CPUTIME_ID)
 * over SECONDS cycles after WARMUP.
 *   stats-floor PREFIX PODS WIDTH WARMUP SECONDS
 * A measuring tool, not part of netshim: netshim itself has no C.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double cpu_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: stats-floor PREFIX PODS WIDTH WARMUP SECONDS\n");
    return 2;
  }
  int pods = atoi(argv[2]), width = atoi(argv[3]), warmup = atoi(argv[4]), secs = atoi(argv[5]);
  int *sock = calloc(pods, sizeof(int)), *index = calloc(pods, sizeof(int));
  int self = open("/proc/self/ns/net", O_RDONLY);
  for (int i = 0; i < pods; i++) {
    char path[256];
    snprintf(path, sizeof path, "/run/netns/%s%0*d", argv[1], width, i + 1);
    int ns = open(path, O_RDONLY);
    if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
      perror(path);
      return 1;
    }
    sock[i] = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    index[i] = if_nametoindex("eth0");
    if (sock[i] < 0 || index[i] == 0) {
      perror("socket or eth0");
      return 1;
    }
    close(ns);
  }
  if (setns(self, CLONE_NEWNET) != 0) {
    perror("setns back");
    return 1;
  }
  char buf[8192];
  double start = 0;
  for (int cycle = 0; cycle < warmup + secs; cycle++) {
    if (cycle == warmup) start = cpu_ms();
    for (int i = 0; i < pods; i++) {
      struct {
        struct nlmsghdr h;
        struct if_stats_msg s;
      } req = {0};
      req.h.nlmsg_len = sizeof req;
      req.h.nlmsg_type = RTM_GETSTATS;
      req.h.nlmsg_flags = NLM_F_REQUEST;
      req.h.nlmsg_seq = cycle + 1;
      req.s.ifindex = index[i];
      req.s.filter_mask = IFLA_STATS_FILTER_BIT(IFLA_STATS_LINK_64);
      if (send(sock[i], &req, sizeof req, 0) < 0 || recv(sock[i], buf, sizeof buf, 0) <= 0) {
        perror("stats");
        return 1;
      }
    }
    sleep(1);
  }
  printf("%.2f\n", (cpu_ms() - start) / secs);
  return 0;
}
