/* Reading msgpack from outside: the bounds pre-check (core/mpscan.c) and the object readers
 * shared by the model file reader (core/model.c) and the wire decoder (wire/decode.c);
 * each caller words its own errors. */
#ifndef BF_CORE_MPOBJ_H
#define BF_CORE_MPOBJ_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* k is the str s. */
static inline int bf_mp_key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

/* The value under key in the map (NULL: absent, or not a map). */
static inline const msgpack_object *bf_mp_map_get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (bf_mp_key_is(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

/* An integer that fits int64_t: 1 and *out; else 0. */
static inline int bf_mp_int(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return 1;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 1;
    }
    return 0;
}

/* A number, integer or float: 1 and *out; else 0 (not checked for finiteness). */
static inline int bf_mp_number(const msgpack_object *o, double *out)
{
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        *out = o->via.f64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *out = (double)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = (double)o->via.i64;
    else
        return 0;
    return 1;
}

/* Checks that buf starts with one msgpack object whose every declared length and count fits
 * in the bytes there, nested at most max_depth deep and made of at most max_objects objects
 * (0: any number): 0 and *used its size (the caller decides about bytes after it), or -1
 * (empty, truncated, too deep, oversized, too many objects).  Run it before
 * msgpack_unpack_next on bytes from outside: msgpack-c allocates what a container declares
 * before it reads a byte of it, and sizeof(msgpack_object) (24) bytes per object, so a body
 * of N one-byte nils would cost 24 N. */
int bf_mp_scan(const void *buf, size_t len, int max_depth, size_t max_objects, size_t *used);

#endif /* BF_CORE_MPOBJ_H */
