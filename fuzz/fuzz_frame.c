// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz_frame.c - the frame parser (nic/frame.c) on arbitrary bytes.
 * Whatever it is given it must return a verdict, and when it says OK
 * every offset and length it reports must lie inside the frame, the IP
 * datagram inside the frame and the payload inside the datagram; the flow
 * hash must be computable for anything it accepted.
 */
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct frame_info fi;
	enum frame_verdict v = frame_parse(data, size, &fi);

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
