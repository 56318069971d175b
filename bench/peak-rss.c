/* Peak memory of one process, measured the same way for every path the lifecycle bench compares (raw C,
 * dmsetup, Node with and without devmapper): runs argv[1..] as a child and prints the kernel's ru_maxrss for
 * it (KiB) on stderr as "peak-rss-kib <n>". The child's stdout passes through; its exit status is ours. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s command [args...]\n", argv[0]); return 2; }
  pid_t pid = fork();
  if (pid < 0) { perror("fork"); return 1; }
  if (pid == 0) { execvp(argv[1], argv + 1); perror(argv[1]); _exit(127); }
  int status;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 1; }
  fprintf(stderr, "peak-rss-kib %ld\n", ru.ru_maxrss);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
