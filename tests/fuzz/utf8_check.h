/* Test helpers: is a msgpack body something a strict decoder (Python's msgpack with
 * raw=False) accepts, i.e. is every str in it, keys included, valid UTF-8?  Written apart
 * from the library's own bf_wire_text, so that the check does not trust the code it checks. */
#ifndef BF_TEST_UTF8_CHECK_H
#define BF_TEST_UTF8_CHECK_H

#include <msgpack.h>
#include <stdint.h>
#include <string.h>

/* 1 when s[0..n) is valid UTF-8: no stray continuation, overlong form, surrogate, code
 * point over U+10FFFF or cut sequence. */
static inline int test_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp = u[i];
        size_t len = cp < 0x80 ? 1 : (cp >> 5) == 6 ? 2 : (cp >> 4) == 14 ? 3
                   : (cp >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n)
            return 0;
        if (len > 1)
            cp &= 0x7Fu >> len;
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (u[i + k] & 0x3F);
        }
        static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_of_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static inline int test_object_text_valid(const msgpack_object *o, int depth)
{
    if (depth > 64)
        return 0;
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        return test_utf8_valid(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!test_object_text_valid(&o->via.array.ptr[i], depth + 1))
                return 0;
        return 1;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++)
            if (!test_object_text_valid(&o->via.map.ptr[i].key, depth + 1) ||
                !test_object_text_valid(&o->via.map.ptr[i].val, depth + 1))
                return 0;
        return 1;
    default:
        return 1;
    }
}

/* 1 when buf[0..len) is exactly one msgpack object whose strs are all valid UTF-8. */
static inline int test_msgpack_text_valid(const char *buf, size_t len)
{
    msgpack_unpacked up;
    size_t off = 0;
    msgpack_unpacked_init(&up);
    int ok = msgpack_unpack_next(&up, buf, len, &off) == MSGPACK_UNPACK_SUCCESS &&
             off == len && test_object_text_valid(&up.data, 0);
    msgpack_unpacked_destroy(&up);
    return ok;
}

#endif
