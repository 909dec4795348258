/* A bounds check of raw msgpack before msgpack-c unpacks it.  msgpack-c allocates
 * n * sizeof(msgpack_object) for a container that *declares* n elements, so five hostile
 * bytes (a map32 of 2^32 entries) would ask for ~100 GB; here every declared count must fit
 * in the bytes that remain, and nesting is bounded.  Used before every unpack of bytes
 * from outside: wire messages and model files. */
#include <string.h>

#include "core/mpobj.h"

typedef struct scanner {
    const uint8_t *p;
    size_t len, off;
    int max_depth;
    size_t objects, max_objects; /* max_objects 0: no limit */
} scanner;

static int take(scanner *s, size_t n, uint64_t *val)
{
    if (s->len - s->off < n)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | s->p[s->off + i];
    s->off += n;
    if (val)
        *val = v;
    return 0;
}

static int skip_bytes(scanner *s, uint64_t n)
{
    if (n > s->len - s->off)
        return -1;
    s->off += (size_t)n;
    return 0;
}

static int scan_object(scanner *s, int depth);

static int scan_container(scanner *s, uint64_t n, int per_item, int depth)
{
    if (depth >= s->max_depth)
        return -1;
    /* each element is at least one byte */
    if (n > (s->len - s->off) / (uint64_t)per_item)
        return -1;
    for (uint64_t i = 0; i < n * (uint64_t)per_item; i++)
        if (scan_object(s, depth + 1) < 0)
            return -1;
    return 0;
}

/* Length-prefixed bodies (str, bin, ext) by lead byte: bytes of the length, extra bytes. */
static int scan_sized(scanner *s, int len_bytes, int extra)
{
    uint64_t n;
    if (take(s, (size_t)len_bytes, &n) < 0)
        return -1;
    return skip_bytes(s, n + (uint64_t)extra);
}

static int scan_object(scanner *s, int depth)
{
    uint64_t b, n;
    if (s->max_objects && ++s->objects > s->max_objects)
        return -1;
    if (take(s, 1, &b) < 0)
        return -1;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0; /* fixint, nil, bool */
    if (b >= 0x80 && b <= 0x8f)
        return scan_container(s, b & 0x0f, 2, depth);
    if (b >= 0x90 && b <= 0x9f)
        return scan_container(s, b & 0x0f, 1, depth);
    if (b >= 0xa0 && b <= 0xbf)
        return skip_bytes(s, b & 0x1f);
    switch (b) {
    case 0xc4: case 0xd9: return scan_sized(s, 1, 0); /* bin8, str8 */
    case 0xc5: case 0xda: return scan_sized(s, 2, 0);
    case 0xc6: case 0xdb: return scan_sized(s, 4, 0);
    case 0xc7: return scan_sized(s, 1, 1);               /* ext8: length, type */
    case 0xc8: return scan_sized(s, 2, 1);
    case 0xc9: return scan_sized(s, 4, 1);
    case 0xca: return skip_bytes(s, 4);                  /* float32 */
    case 0xcb: return skip_bytes(s, 8);
    case 0xcc: case 0xd0: return skip_bytes(s, 1);
    case 0xcd: case 0xd1: return skip_bytes(s, 2);
    case 0xce: case 0xd2: return skip_bytes(s, 4);
    case 0xcf: case 0xd3: return skip_bytes(s, 8);
    case 0xd4: return skip_bytes(s, 2);                  /* fixext1: type + 1 */
    case 0xd5: return skip_bytes(s, 3);
    case 0xd6: return skip_bytes(s, 5);
    case 0xd7: return skip_bytes(s, 9);
    case 0xd8: return skip_bytes(s, 17);
    case 0xdc: if (take(s, 2, &n) < 0) return -1; return scan_container(s, n, 1, depth);
    case 0xdd: if (take(s, 4, &n) < 0) return -1; return scan_container(s, n, 1, depth);
    case 0xde: if (take(s, 2, &n) < 0) return -1; return scan_container(s, n, 2, depth);
    case 0xdf: if (take(s, 4, &n) < 0) return -1; return scan_container(s, n, 2, depth);
    default: return -1; /* 0xc1 is never used */
    }
}

int bf_mp_scan(const void *buf, size_t len, int max_depth, size_t max_objects, size_t *used)
{
    scanner s = {buf, len, 0, max_depth, 0, max_objects};
    *used = 0;
    if (buf == NULL || len == 0 || scan_object(&s, 0) < 0)
        return -1;
    *used = s.off;
    return 0;
}
