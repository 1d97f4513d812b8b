// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz_frame.c - the frame parser (nic/frame.c) on arbitrary bytes.
 * Whatever it is given it must return a verdict, and when it says OK
 * every offset and length it reports must lie inside the frame, the IP
 * datagram inside the frame and the payload inside the datagram; the flow
 * hash must be computable for anything it accepted. The same bytes go to
 * the TSO builder's parser (nic/tso.c): what it accepts must lie inside
 * them, and a frame started from them must take no segment of its own.
 */
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"
#include "tso.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_tso(const uint8_t *data, size_t size)
{
	static struct tso_frame t;
	struct tso_seg s;
	size_t hdr;

	if (!tso_parse(data, size < TSO_HDR_MAX ? size : TSO_HDR_MAX, size, &s))
		return;
	hdr = (size_t)s.l2_len + s.l3_len + s.l4_len;
	if (hdr > TSO_HDR_MAX || hdr > size || hdr + s.payload > size || !s.payload)
		abort();
	tso_start(&t, data, &s);
	if (tso_append(&t, data, &s, 64)) /* the same sequence number again */
		abort();
	tso_finish(&t, t.hdr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct frame_info fi;
	enum frame_verdict v = frame_parse(data, size, &fi);

	fuzz_tso(data, size);

	if ((unsigned int)v >= FRAME_VERDICTS)
		abort();
	if (v != FRAME_OK)
		return 0;
	if (fi.l3_off > size || fi.l4_off > size)
		abort();
	if (fi.ip_version && (size_t)fi.l3_off + fi.l3_len > size)
		abort();
	if (fi.payload_len && (size_t)fi.payload_off + fi.payload_len > size)
		abort();
	if (fi.ip_version && fi.payload_len &&
	    (size_t)fi.payload_off + fi.payload_len > (size_t)fi.l3_off + fi.l3_len)
		abort();
	if (fi.tcp.wscale > 14 || fi.tcp.nsack > 4)
		abort();
	(void)frame_flow_hash(&fi, NULL);
	return 0;
}
