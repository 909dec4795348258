/* CURVE keys in files, and the ZAP handler that admits client keys from an allow list.
 * File format (docs/PROTOCOL.md section 5): text lines "public = <Z85>" and
 * "secret = <Z85>"; '#' starts a comment; an allow file may also hold bare keys. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/spec.h"
#include "serve/serve.h"

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int valid_z85_key(const char *s)
{
    uint8_t bin[32];
    return strlen(s) == BF_CURVE_KEY_LEN && zmq_z85_decode(bin, s) != NULL;
}

/* Reads "public = KEY", "secret = KEY" or a bare KEY (name "").  Z85 uses '#' and '=',
 * so a comment is a line that starts with '#', and the name ends at the first '='.
 * Returns 0 on a usable line, -1 on a blank or comment line. */
static int parse_line(char *line, const char **name, char **value)
{
    line = trim(line);
    if (*line == '\0' || *line == '#')
        return -1;
    *name = "";
    *value = line;
    if (strlen(line) == BF_CURVE_KEY_LEN)
        return 0;
    static const char *const names[2] = {"public", "secret"};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(names[i]);
        if (strncmp(line, names[i], n) != 0)
            continue;
        char *p = line + n;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '=')
            continue;
        *name = names[i];
        *value = trim(p + 1);
        return 0;
    }
    *name = "?";
    return 0;
}

/* Key files and allow lists may come through a pipe (a key handed over by another
 * program): they are opened with bf_fopen_read(path, 0), and their readers stop after a
 * number of lines, so that an endless source (/dev/zero) is refused too. */
static bf_status too_long(FILE *f, const char *path, int max_lines)
{
    fclose(f);
    return bf_error(BF_STATUS_INVALID_ARGUMENT, "%s: not a key file (over %d lines)", path,
                    max_lines);
}

bf_status bf_curve_key_read(const char *path, char public_key[BF_CURVE_KEY_LEN + 1],
                            char secret_key[BF_CURVE_KEY_LEN + 1])
{
    char line[512];
    int lineno = 0;
    if (path == NULL || public_key == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_curve_key_read: NULL argument");
    public_key[0] = '\0';
    if (secret_key)
        secret_key[0] = '\0';
    FILE *f = bf_fopen_read(path, 0);
    if (f == NULL)
        return BF_STATUS_IO;
    while (fgets(line, sizeof line, f)) {
        const char *name;
        char *value;
        if (++lineno > BF_KEY_FILE_MAX_LINES)
            return too_long(f, path, BF_KEY_FILE_MAX_LINES);
        if (parse_line(line, &name, &value) < 0)
            continue;
        char *dst = strcmp(name, "public") == 0 ? public_key
                    : strcmp(name, "secret") == 0 ? secret_key : NULL;
        if (strcmp(name, "secret") == 0 && secret_key == NULL)
            continue;
        if (dst == NULL || !valid_z85_key(value)) {
            fclose(f);
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "%s:%d: expected \"public = <40 Z85 "
                            "chars>\" or \"secret = <40 Z85 chars>\"", path, lineno);
        }
        memcpy(dst, value, BF_CURVE_KEY_LEN + 1);
    }
    fclose(f);
    if (public_key[0] == '\0')
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "%s: no public key", path);
    return BF_STATUS_OK;
}

/* Writes a key file as a new file of its own (mode 0600 with a secret, else 0644) renamed
 * over `path`: an existing file keeps its contents if anything fails, and its mode (say,
 * readable by others) never applies to the secret.  A path that is not a regular file
 * (a device, a directory) is refused rather than replaced. */
static bf_status write_key_file(const char *path, const char *pub, const char *sec)
{
    struct stat sb;
    char tmp[4096];
    if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return bf_error(BF_STATUS_IO, "'%s' is not a regular file", path);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= sizeof tmp)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "key path too long");
    int fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0)
        return bf_error(BF_STATUS_IO, "%s: %s", path, strerror(errno));
    FILE *f = sec || fchmod(fd, 0644) == 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return bf_error(BF_STATUS_IO, "%s: %s", tmp, strerror(e));
    }
    fprintf(f, "# butterfly CURVE key v1%s\npublic = %s\n",
            sec ? " (keep this file private)" : "", pub);
    if (sec)
        fprintf(f, "secret = %s\n", sec);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return bf_error(BF_STATUS_IO, "%s: %s", path, bad ? "write failed" : strerror(e));
    }
    return BF_STATUS_OK;
}

bf_status bf_curve_keygen(const char *path, char public_key[BF_CURVE_KEY_LEN + 1])
{
    char pub[BF_CURVE_KEY_LEN + 1], sec[BF_CURVE_KEY_LEN + 1], pubpath[4096];
    if (path == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_curve_keygen: NULL path");
    if (zmq_curve_keypair(pub, sec) != 0)
        return bf_error(BF_STATUS_UNSUPPORTED, "libzmq without CURVE: %s",
                        zmq_strerror(zmq_errno()));
    if ((size_t)snprintf(pubpath, sizeof pubpath, "%s.pub", path) >= sizeof pubpath)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "key path too long");
    bf_status st = write_key_file(path, pub, sec);
    if (st == BF_STATUS_OK)
        st = write_key_file(pubpath, pub, NULL);
    if (st == BF_STATUS_OK && public_key)
        memcpy(public_key, pub, sizeof pub);
    return st;
}

bf_status bf_curve_allow_load(bf_curve_allow *allow, const char *path)
{
    char line[512];
    int cap = 0, lines = 0;
    allow->n = 0;
    allow->keys = NULL;
    FILE *f = bf_fopen_read(path, 0);
    if (f == NULL)
        return BF_STATUS_IO;
    while (fgets(line, sizeof line, f)) {
        const char *name;
        char *value;
        if (++lines > BF_ALLOW_FILE_MAX_LINES) {
            bf_curve_allow_free(allow);
            return too_long(f, path, BF_ALLOW_FILE_MAX_LINES);
        }
        if (parse_line(line, &name, &value) < 0 || strcmp(name, "secret") == 0)
            continue;
        if (!valid_z85_key(value) || (name[0] && strcmp(name, "public") != 0)) {
            fclose(f);
            bf_curve_allow_free(allow);
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "%s: bad key line", path);
        }
        if (allow->n == cap) {
            cap = cap ? 2 * cap : 16;
            void *nk = realloc(allow->keys, (size_t)cap * 32);
            if (nk == NULL) {
                fclose(f);
                bf_curve_allow_free(allow);
                return bf_error(BF_STATUS_OUT_OF_MEMORY, "allow list");
            }
            allow->keys = nk;
        }
        zmq_z85_decode(allow->keys[allow->n++], value);
    }
    fclose(f);
    if (allow->n == 0)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "%s: no keys (an empty allow list "
                        "would refuse everyone)", path);
    return BF_STATUS_OK;
}

void bf_curve_allow_free(bf_curve_allow *allow)
{
    free(allow->keys);
    allow->keys = NULL;
    allow->n = 0;
}

static int key_listed(const bf_curve_allow *allow, zmq_msg_t *key)
{
    for (int i = 0; i < allow->n; i++)
        if (memcmp(allow->keys[i], zmq_msg_data(key), 32) == 0)
            return 1;
    return 0;
}

/* ZAP request: [version][request id][domain][address][identity][mechanism][credentials] */
static int allowed(const bf_curve_allow *clients, const bf_curve_allow *workers,
                   zmq_msg_t *parts, int n)
{
    size_t mlen = zmq_msg_size(&parts[5]), dlen = zmq_msg_size(&parts[2]);
    const char *mech = zmq_msg_data(&parts[5]);
    int worker = dlen == strlen(BF_ZAP_WORKERS) &&
                 memcmp(zmq_msg_data(&parts[2]), BF_ZAP_WORKERS, dlen) == 0;
    if (mlen == 4 && memcmp(mech, "NULL", 4) == 0)
        return !worker; /* a plain backend's workers; CURVE sockets never ask with NULL */
    if (mlen != 5 || memcmp(mech, "CURVE", 5) != 0 || n < 7 || zmq_msg_size(&parts[6]) != 32)
        return 0;
    if (worker)
        return key_listed(workers, &parts[6]); /* a worker sees every client's data */
    if (clients->n == 0)
        return 1; /* knowing the server key is enough */
    return key_listed(clients, &parts[6]);
}

void bf_zap_handle(void *zap, const bf_curve_allow *clients, const bf_curve_allow *workers)
{
    zmq_msg_t parts[8];
    for (int i = 0; i < 8; i++)
        zmq_msg_init(&parts[i]);
    int n = bf_zmq_recv_parts(zap, parts, 8, ZMQ_DONTWAIT);
    if (n >= 6 && n <= 8) {
        int ok = allowed(clients, workers, parts, n);
        const void *out[6] = {"1.0", zmq_msg_data(&parts[1]), ok ? "200" : "400",
                              ok ? "OK" : "key not allowed", "", ""};
        size_t lens[6] = {3, zmq_msg_size(&parts[1]), 3, strlen(out[3]), 0, 0};
        bf_zmq_send_parts(zap, out, lens, 6, 0);
    } else if (n > 0) {
        /* REP must answer before it can read again */
        const void *out[6] = {"1.0", "", "500", "malformed ZAP request", "", ""};
        size_t lens[6] = {3, 0, 3, 21, 0, 0};
        bf_zmq_send_parts(zap, out, lens, 6, 0);
    }
    for (int i = 0; i < 8; i++)
        zmq_msg_close(&parts[i]);
}

bf_status bf_curve_peer_load(bf_curve_peer *peer, const char *server_key_file,
                             const char *key_file, int need_key_file)
{
    memset(peer, 0, sizeof *peer);
    if (server_key_file == NULL)
        return BF_STATUS_OK;
    bf_status st = bf_curve_key_read(server_key_file, peer->server, NULL);
    if (st != BF_STATUS_OK)
        return st;
    if (key_file) {
        st = bf_curve_key_read(key_file, peer->pub, peer->sec);
        if (st == BF_STATUS_OK && peer->sec[0] == '\0')
            st = bf_error(BF_STATUS_INVALID_ARGUMENT, "%s: no secret key", key_file);
        if (st != BF_STATUS_OK)
            return st;
    } else if (need_key_file) {
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "CURVE: a key pair file is needed "
                        "(its public key must be on the server's allow list)");
    } else if (zmq_curve_keypair(peer->pub, peer->sec) != 0) {
        return bf_error(BF_STATUS_UNSUPPORTED, "libzmq without CURVE");
    }
    peer->on = 1;
    return BF_STATUS_OK;
}

bf_status bf_curve_peer_apply(const bf_curve_peer *peer, void *sock)
{
    if (!peer->on)
        return BF_STATUS_OK;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, peer->server, BF_CURVE_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, peer->pub, BF_CURVE_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, peer->sec, BF_CURVE_KEY_LEN) != 0)
        return bf_zmq_error("CURVE client options");
    return BF_STATUS_OK;
}
