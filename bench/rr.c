// SPDX-License-Identifier: Apache-2.0
/* Request/response latency over one TCP connection: the client sends one
 * byte, the server echoes it, N times in a row (netperf TCP_RR style; netperf
 * is not installed here). Written in C so the number is the network path,
 * not a language runtime's event loop.
 *   rr serve PORT            echo server (IPv4 and IPv6), one client at a time
 *   rr client IP PORT N      prints {"n","median_ns","mean_ns","p99_ns"} */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		die("setsockopt TCP_NODELAY");
}

static int serve(int port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	int one = 1, zero = 0, l = socket(AF_INET6, SOCK_STREAM, 0);
	char b;

	if (l < 0)
		die("socket");
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 16) < 0)
		die("bind/listen");
	for (;;) {
		int c = accept(l, NULL, NULL);

		if (c < 0)
			continue;
		nodelay(c);
		while (read(c, &b, 1) == 1)
			if (write(c, &b, 1) != 1)
				break;
		close(c);
	}
}

static int cmp(const void *x, const void *y)
{
	long a = *(const long *)x, b = *(const long *)y;

	return (a > b) - (a < b);
}

static long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

static int client(const char *ip, int port, int n)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	long *rt = calloc(n, sizeof(long)), sum = 0;
	char b = 'x';
	int fd, i;

	if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		len = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		len = sizeof(struct sockaddr_in6);
	} else {
		fprintf(stderr, "rr: bad address %s\n", ip);
		return 2;
	}
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0)
		die("connect");
	nodelay(fd);
	/* warm up caches, conntrack and the scheduler before measuring */
	for (i = 0; i < 200; i++)
		if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1)
			die("warmup");
	for (i = 0; i < n; i++) {
		long t0 = now_ns();

		if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1)
			die("round trip");
		rt[i] = now_ns() - t0;
		sum += rt[i];
	}
	close(fd);
	qsort(rt, n, sizeof(long), cmp);
	printf("{\"n\":%d,\"median_ns\":%ld,\"mean_ns\":%ld,\"p99_ns\":%ld}\n",
	       n, rt[n / 2], sum / n, rt[(long)n * 99 / 100]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: rr serve PORT | rr client IP PORT N\n");
	return 2;
}
