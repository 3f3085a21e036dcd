/*
 * The reference for the filter bench: libpcap's own interpreter, bpf_filter(), timed per packet.
 *
 *   filter-ref FILE.pcap REPS EXPR...
 *
 * Reads a classic little-endian pcap file into memory, compiles each expression with pcap_compile on a
 * pcap_open_dead handle of the file's link type (DLT_RAW for LINKTYPE_RAW 101), and runs bpf_filter over
 * every packet REPS times. Prints one line per expression: nanoseconds per packet, then the number of
 * packets that matched in one pass (the bench checks it against tunpipe's count), then the expression.
 * Built by the bench with cc -O2 and -lpcap.
 */
#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct packets {
	unsigned char *bytes;
	size_t *offset;
	uint32_t *caplen;
	uint32_t *wirelen;
	size_t count;
	uint32_t linktype;
};

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int load(const char *path, struct packets *out)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *file = malloc((size_t)size);
	if (!file || fread(file, 1, (size_t)size, f) != (size_t)size || size < 24 || le32(file) != 0xa1b2c3d4) {
		fprintf(stderr, "%s: not a little-endian classic pcap file\n", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	size_t n = 0;
	for (size_t o = 24; o + 16 <= (size_t)size; o += 16 + le32(file + o + 8))
		n++;
	out->bytes = file;
	out->offset = malloc(n * sizeof *out->offset);
	out->caplen = malloc(n * sizeof *out->caplen);
	out->wirelen = malloc(n * sizeof *out->wirelen);
	out->linktype = le32(file + 20);
	out->count = 0;
	for (size_t o = 24; o + 16 <= (size_t)size && out->count < n; o += 16 + le32(file + o + 8)) {
		uint32_t caplen = le32(file + o + 8);
		if (o + 16 + caplen > (size_t)size)
			break;
		out->offset[out->count] = o + 16;
		out->caplen[out->count] = caplen;
		out->wirelen[out->count] = le32(file + o + 12);
		out->count++;
	}
	return 0;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s FILE.pcap REPS EXPR...\n", argv[0]);
		return 2;
	}
	struct packets pk;
	if (load(argv[1], &pk) != 0)
		return 1;
	long reps = atol(argv[2]);
	int dlt = pk.linktype == 101 ? DLT_RAW : (int)pk.linktype;
	pcap_t *dead = pcap_open_dead(dlt, 262144);
	for (int e = 3; e < argc; e++) {
		struct bpf_program prog;
		if (pcap_compile(dead, &prog, argv[e], 1, PCAP_NETMASK_UNKNOWN) != 0) {
			fprintf(stderr, "%s: %s\n", argv[e], pcap_geterr(dead));
			return 1;
		}
		size_t matched = 0;
		for (size_t i = 0; i < pk.count; i++)
			matched += bpf_filter(prog.bf_insns, pk.bytes + pk.offset[i], pk.wirelen[i], pk.caplen[i]) != 0;
		volatile size_t sink = 0;
		double t0 = now_ns();
		for (long r = 0; r < reps; r++) {
			size_t m = 0;
			for (size_t i = 0; i < pk.count; i++)
				m += bpf_filter(prog.bf_insns, pk.bytes + pk.offset[i], pk.wirelen[i], pk.caplen[i]) != 0;
			sink += m;
		}
		double t1 = now_ns();
		printf("%.3f\t%zu\t%s\n", (t1 - t0) / ((double)reps * (double)pk.count), matched, argv[e]);
		pcap_freecode(&prog);
	}
	pcap_close(dead);
	return 0;
}
