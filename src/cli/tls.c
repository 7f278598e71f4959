/*
 * See tls.h.  Messages, file names, flag names and defaults are Nomad's,
 * with "keyraft" where Nomad says "nomad".  Where this file departs from
 * Nomad it says so and why; the main departures are:
 *
 * - Each CA subject flag has its own default (Nomad insists on
 *   -common-name, -country, -organization and -organizational-unit
 *   together once any subject flag is given), and an empty value leaves
 *   that attribute out.  Organization and unit default to "Keyraft"
 *   rather than Nomad's "HashiCorp Inc." and "Nomad".
 * - `-name-constraint` with the default domain is accepted (Nomad
 *   refuses it); it constrains the CA to keyraft and localhost.
 * - If the key file cannot be written, the certificate just written is
 *   removed again (Nomad leaves it), and invalid -additional-ipaddress
 *   values are refused (Nomad silently writes an empty IP SAN).
 * - Flag misuse exits 2 like every keyraft command (Nomad exits 1), and
 *   stray positional arguments are refused (Nomad ignores one).
 * - -domain, -region and -node become both DNS names and file names, so
 *   they are limited to letters, digits, '-', '_' and inner dots: no path
 *   separators, no "..".
 * - `-node` (from Consul's `tls cert create`) adds
 *   <node>.server.<region>.<domain> to a server certificate.
 */
#include "cli/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "common/buf.h"
#include "common/err.h"
#include "crypto/secmem.h"
#include "crypto/x509.h"

#define DEFAULT_DOMAIN "keyraft"
#define DEFAULT_REGION "global"
#define CA_DAYS 1825
#define CERT_DAYS 365
#define KEY_FILE_MAX (1024 * 1024)
#define LABEL_MAX 100 /* -domain, -region, -node */
#define MSG_NO_ARGS "this command takes no arguments"

/* Values of a repeatable flag (Go's flag.Var over a string slice). */
struct multi {
    const char *name;
    const char **vals; /* borrowed from argv */
    size_t n;
};

static const struct kr_cli_flag *lookup(const struct kr_cli_flag *f,
                                        const char *name, size_t len)
{
    for (; f != NULL && f->name != NULL; f++) {
        if (strlen(f->name) == len && strncmp(f->name, name, len) == 0)
            return f;
    }
    return NULL;
}

/*
 * The shared parser keeps only the last value of a flag, so repeatable
 * flags are taken out of argv first.  Walks argv with the parser's grammar
 * (see cmd.h), moves every value of the flags in m[0..nm) into m, and
 * returns the remaining arguments in *out (argv[0] first; free the array,
 * not its strings).  The walk stops at the first positional argument, "-",
 * "--", -h or an unknown flag; what follows is left for kr_cli_parse to
 * accept or report.  Returns 0, KR_EINVAL (a repeatable flag without its
 * value) or KR_ENOMEM, with errmsg set.
 */
static int take_repeated(const struct kr_cli_flag *flags, int argc, char **argv,
                         struct multi *m, size_t nm, char ***out, int *out_argc,
                         char *errmsg)
{
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    int i = 1, o = 1;

    if (rest == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    for (size_t k = 0; k < nm; k++) {
        m[k].n = 0;
        m[k].vals = calloc((size_t)argc, sizeof(*m[k].vals));
        if (m[k].vals == NULL) {
            free(rest);
            return kr_errf(errmsg, KR_ENOMEM, "out of memory");
        }
    }
    rest[0] = argv[0];
    while (i < argc) {
        const char *a = argv[i], *name, *eq;
        const struct kr_cli_flag *f;
        struct multi *mm = NULL;
        size_t len;

        if (a[0] != '-' || a[1] == '\0' || strcmp(a, "--") == 0)
            break;
        name = a[1] == '-' ? a + 2 : a + 1;
        eq = strchr(name, '=');
        len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        for (size_t k = 0; k < nm && mm == NULL; k++) {
            if (strlen(m[k].name) == len && strncmp(m[k].name, name, len) == 0)
                mm = &m[k];
        }
        if (mm != NULL) {
            if (eq == NULL && i + 1 >= argc) {
                free(rest);
                return kr_errf(errmsg, KR_EINVAL, "flag needs an argument: -%s",
                               mm->name);
            }
            mm->vals[mm->n++] = eq != NULL ? eq + 1 : argv[i + 1];
            i += eq != NULL ? 1 : 2;
            continue;
        }
        f = lookup(flags, name, len);
        if (f == NULL)
            break;
        rest[o++] = argv[i++];
        if (eq == NULL && f->type != KR_CLI_FLAG_BOOL && i < argc)
            rest[o++] = argv[i++];
    }
    while (i < argc)
        rest[o++] = argv[i++];
    *out = rest;
    *out_argc = o;
    return 0;
}

static void multi_free(struct multi *m, size_t nm)
{
    for (size_t k = 0; k < nm; k++) {
        free(m[k].vals);
        m[k].vals = NULL;
    }
}

static const char *env(const char *name)
{
    return getenv(name);
}

/* A list of owned strings. */
struct names {
    char **v;
    size_t n, cap;
};

static void names_free(struct names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* Appends a copy of s[0..len) unless the list has it (case-insensitive:
 * DNS names are), or it is empty.  Returns 0 or KR_ENOMEM. */
static int names_add(struct names *l, const char *s, size_t len)
{
    char *c;

    if (len == 0)
        return 0;
    for (size_t i = 0; i < l->n; i++) {
        if (strlen(l->v[i]) == len && strncasecmp(l->v[i], s, len) == 0)
            return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        char **v = realloc(l->v, cap * sizeof(*v));

        if (v == NULL)
            return KR_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    c = strndup(s, len);
    if (c == NULL)
        return KR_ENOMEM;
    l->v[l->n++] = c;
    return 0;
}

/* names_add of a formatted string. */
static int names_addf(struct names *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int names_addf(struct names *l, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return KR_EINVAL;
    return names_add(l, buf, (size_t)n);
}

/* Adds each value with surrounding white space trimmed, as Nomad does;
 * values that are empty after trimming are dropped. */
static int names_add_trimmed(struct names *l, const struct multi *m)
{
    for (size_t i = 0; i < m->n; i++) {
        const char *s = m->vals[i];
        size_t len;
        int rv;

        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
            s++;
        len = strlen(s);
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
                           s[len - 1] == '\n' || s[len - 1] == '\r'))
            len--;
        rv = names_add(l, s, len);
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* A -domain, -region or -node value: it becomes part of DNS names and of
 * file names, so no separators, no leading dot or dash, no "..". */
static bool valid_label(const char *s)
{
    if (s[0] == '\0' || s[0] == '.' || s[0] == '-' || strlen(s) > LABEL_MAX ||
        strstr(s, "..") != NULL || s[strlen(s) - 1] == '.')
        return false;
    for (; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
            return false;
    }
    return true;
}

static bool valid_ip(const char *s)
{
    unsigned char addr[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, s, addr) == 1 ||
           inet_pton(AF_INET6, s, addr) == 1;
}

/* valid_label, or a usage error naming the flag in *rc. */
static bool check_label(const struct kr_cli_cmd *cmd, const char *flag,
                        const char *value, int *rc)
{
    if (valid_label(value))
        return true;
    *rc = kr_cli_usage_error(cmd,
                             "invalid -%s \"%s\": use letters, digits, "
                             "'-', '_' and inner dots (at most %d)",
                             flag, value, LABEL_MAX);
    return false;
}

/* True when something (even a dangling symlink) is at path. */
static bool exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 || errno != ENOENT;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Best effort: makes a new directory entry durable. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir =
        slash == NULL ? strdup(".") : strndup(path, (size_t)(slash - path) + 1);
    int fd;

    if (dir == NULL)
        return;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int kr_cli_tls_write_new(const char *path, const void *data, size_t len,
                         mode_t mode, char *errmsg)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash == NULL ? path : slash + 1;
    int dlen = slash == NULL ? 0 : (int)(slash - path) + 1;
    size_t cap = strlen(path) + sizeof("/..tmp.XXXXXX");
    char *tmp = malloc(cap);
    int fd = -1, rv = KR_EIO, e;

    if (tmp == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    if (base[0] == '\0') {
        rv = kr_errf(errmsg, KR_EIO, "%s: not a file name", path);
        goto out;
    }
    snprintf(tmp, cap, "%.*s.%s.tmp.XXXXXX", dlen, path, base);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        tmp[0] = '\0';
        rv = kr_errf(errmsg, KR_EIO, "create %s: %s", path, strerror(e));
        goto out;
    }
    if (fchmod(fd, mode) != 0 || write_all(fd, data, len) != 0 ||
        fsync(fd) != 0) {
        rv = kr_errf(errmsg, KR_EIO, "write %s: %s", path, strerror(errno));
        goto out;
    }
    e = close(fd);
    fd = -1;
    if (e != 0) {
        rv = kr_errf(errmsg, KR_EIO, "write %s: %s", path, strerror(errno));
        goto out;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
        tmp[0] = '\0';
    } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
        /* No RENAME_NOREPLACE here: link(2) also refuses to replace. */
        if (link(tmp, path) != 0) {
            e = errno;
            rv = e == EEXIST
                     ? kr_errf(errmsg, KR_ECONFLICT, "%s already exists", path)
                     : kr_errf(errmsg, KR_EIO, "create %s: %s", path,
                               strerror(e));
            goto out;
        }
    } else {
        e = errno;
        rv = e == EEXIST
                 ? kr_errf(errmsg, KR_ECONFLICT, "%s already exists", path)
                 : kr_errf(errmsg, KR_EIO, "create %s: %s", path, strerror(e));
        goto out;
    }
    sync_dir(path);
    rv = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp[0] != '\0')
        (void)unlink(tmp);
    free(tmp);
    return rv;
}

/* Reads a private key file (at most 1 MiB) into secret memory. */
static int read_secret_file(const char *path, struct kr_secret **out,
                            char *errmsg)
{
    struct kr_secret *s = NULL;
    struct stat st;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY), rv = KR_EIO;

    if (fd < 0)
        return kr_errf(errmsg, KR_EIO, "open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > KEY_FILE_MAX) {
        rv = kr_errf(errmsg, KR_EIO, "%s: not a regular file of 1 to %d bytes",
                     path, KEY_FILE_MAX);
        goto out;
    }
    s = kr_secret_new((size_t)st.st_size);
    if (s == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        goto out;
    }
    while (got < s->len) {
        ssize_t n = read(fd, s->data + got, s->len - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rv = kr_errf(errmsg, KR_EIO, "read %s: %s", path,
                         n == 0 ? "file shrank" : strerror(errno));
            goto out;
        }
        got += (size_t)n;
    }
    *out = s;
    s = NULL;
    rv = 0;
out:
    kr_secret_free(s);
    close(fd);
    return rv;
}

/* Writes the certificate and then the key; if the key cannot be written
 * the certificate just written is removed again, so a failure leaves
 * neither file behind. */
static int write_pair(const struct kr_x509_pair *p, const char *cert_file,
                      const char *key_file)
{
    char errmsg[KR_ERRMSG_SIZE];

    if (kr_cli_tls_write_new(cert_file, p->cert_pem, p->cert_len, 0644,
                             errmsg) != 0)
        return kr_cli_error("%s", errmsg);
    if (kr_cli_tls_write_new(key_file, p->key_pem->data, p->key_pem->len, 0600,
                             errmsg) != 0) {
        (void)unlink(cert_file);
        return kr_cli_error("%s", errmsg);
    }
    return KR_CLI_EXIT_OK;
}

static const char CA_ABOUT[] =
    "Create a new certificate authority: an ECDSA P-256 key and a\n"
    "self-signed certificate, written to <domain>-agent-ca.pem and\n"
    "<domain>-agent-ca-key.pem (mode 0600) in the current directory.\n"
    "Existing files are never overwritten.";

int kr_cli_tls_ca_create_main(int argc, char **argv)
{
    struct multi extra = {"additional-domain", NULL, 0};
    struct kr_x509_pair pair = {0};
    struct names permitted = {0};
    const char *common_name = NULL, *domain = NULL, *country = NULL;
    const char *locality = NULL, *organization = NULL, *unit = NULL;
    const char *postal_code = NULL, *province = NULL, *street = NULL;
    const char *unused = NULL;
    char **rest = NULL, errmsg[KR_ERRMSG_SIZE];
    char cert_file[256], key_file[256];
    bool constraint = false;
    int days = CA_DAYS, nrest = 0, argi = 0, rc = KR_CLI_EXIT_ERROR;
    const struct kr_cli_flag flags[] = {
        {"additional-domain", KR_CLI_FLAG_STRING, &unused, NULL, "<domain>",
         "Add an additional DNS zone to the CA's permitted names.  May be\n"
         "given several times.  Needs -name-constraint.",
         NULL},
        {"common-name", KR_CLI_FLAG_STRING, &common_name, NULL, "<name>",
         "Common Name of the CA; its serial number is appended.  Defaults\n"
         "to \"Keyraft Agent CA\".",
         NULL},
        {"country", KR_CLI_FLAG_STRING, &country, NULL, "<code>",
         "Country of the CA (two letters).  Defaults to \"US\".", NULL},
        {"days", KR_CLI_FLAG_INT, &days, NULL, "<days>",
         "Number of days the CA is valid for from now on.  Defaults to 5\n"
         "years or 1825 days.",
         NULL},
        {"domain", KR_CLI_FLAG_STRING, &domain, NULL, "<domain>",
         "Domain of the keyraft cluster; names the files and, with\n"
         "-name-constraint, the permitted DNS zone.  Defaults to\n"
         "\"keyraft\".",
         NULL},
        {"locality", KR_CLI_FLAG_STRING, &locality, NULL, "<locality>",
         "Locality of the CA.  Defaults to \"San Francisco\".", NULL},
        {"name-constraint", KR_CLI_FLAG_BOOL, &constraint, NULL, NULL,
         "Restrict the CA to DNS names under -domain, \"keyraft\",\n"
         "\"localhost\" and every -additional-domain (a critical name\n"
         "constraint).  If the HTTP API is served over HTTPS under another\n"
         "name, add it with -additional-domain.  Defaults to false.",
         NULL},
        {"organization", KR_CLI_FLAG_STRING, &organization, NULL, "<org>",
         "Organization of the CA.  Defaults to \"Keyraft\".", NULL},
        {"organizational-unit", KR_CLI_FLAG_STRING, &unit, NULL, "<unit>",
         "Organizational Unit of the CA.  Defaults to \"Keyraft\".", NULL},
        {"postal-code", KR_CLI_FLAG_STRING, &postal_code, NULL, "<code>",
         "Postal Code of the CA.  Defaults to \"94105\".", NULL},
        {"province", KR_CLI_FLAG_STRING, &province, NULL, "<province>",
         "Province of the CA.  Defaults to \"CA\".", NULL},
        {"street-address", KR_CLI_FLAG_STRING, &street, NULL, "<address>",
         "Street Address of the CA.  Defaults to \"101 Second Street\".\n"
         "\n"
         "An empty value (\"\") for -country, -locality, -organization,\n"
         "-organizational-unit, -postal-code, -province or -street-address\n"
         "leaves that attribute out of the CA's name.",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "tls ca create",     "[options]", CA_ABOUT,
        "CA Create Options", flags,       NULL,
    };
    struct kr_x509_ca_opts o = {0};

    kr_cli_protect_secrets();
    if (take_repeated(flags, argc, argv, &extra, 1, &rest, &nrest, errmsg) !=
        0) {
        rc = kr_cli_usage_error(&cmd, "%s", errmsg);
        goto out;
    }
    if (!kr_cli_parse_args(&cmd, nrest, rest, 0, 0, MSG_NO_ARGS, &argi, &rc))
        goto out;
    if (domain == NULL)
        domain = DEFAULT_DOMAIN;
    if (!check_label(&cmd, "domain", domain, &rc))
        goto out;
    if (days < 1 || days > KR_X509_MAX_DAYS) {
        rc = kr_cli_usage_error(&cmd, "-days must be between 1 and %d",
                                KR_X509_MAX_DAYS);
        goto out;
    }
    if (common_name != NULL && common_name[0] == '\0') {
        rc = kr_cli_usage_error(&cmd, "-common-name must not be empty");
        goto out;
    }
    if (strcmp(domain, DEFAULT_DOMAIN) != 0 && !constraint) {
        rc = kr_cli_usage_error(&cmd, "Please provide the -name-constraint "
                                      "flag to use a custom domain "
                                      "constraint");
        goto out;
    }
    if (extra.n > 0 && !constraint) {
        rc = kr_cli_usage_error(&cmd, "Please provide the -name-constraint "
                                      "flag to use -additional-domain");
        goto out;
    }
    snprintf(cert_file, sizeof(cert_file), "%s-agent-ca.pem", domain);
    snprintf(key_file, sizeof(key_file), "%s-agent-ca-key.pem", domain);
    if (exists(cert_file)) {
        kr_cli_error("CA certificate file '%s' already exists", cert_file);
        goto out;
    }
    if (exists(key_file)) {
        kr_cli_error("CA key file '%s' already exists", key_file);
        goto out;
    }
    /* Like Nomad, always permit the built-in domain too: certificates for
     * a custom domain also carry <role>.<region>.keyraft. */
    if (constraint &&
        (names_add(&permitted, domain, strlen(domain)) != 0 ||
         names_add(&permitted, "localhost", 9) != 0 ||
         names_add(&permitted, DEFAULT_DOMAIN, strlen(DEFAULT_DOMAIN)) != 0 ||
         names_add_trimmed(&permitted, &extra) != 0)) {
        kr_cli_error("out of memory");
        goto out;
    }
    o.common_name = common_name != NULL ? common_name : "Keyraft Agent CA";
    o.country = country != NULL ? country : "US";
    o.organization = organization != NULL ? organization : "Keyraft";
    o.organizational_unit = unit != NULL ? unit : "Keyraft";
    o.locality = locality != NULL ? locality : "San Francisco";
    o.province = province != NULL ? province : "CA";
    o.street_address = street != NULL ? street : "101 Second Street";
    o.postal_code = postal_code != NULL ? postal_code : "94105";
    o.days = days;
    o.permitted_dns = (const char *const *)permitted.v;
    o.n_permitted_dns = permitted.n;
    if (kr_x509_ca_create(&o, &pair, errmsg) != 0) {
        kr_cli_error("%s", errmsg);
        goto out;
    }
    rc = write_pair(&pair, cert_file, key_file);
    if (rc != KR_CLI_EXIT_OK)
        goto out;
    printf("==> CA certificate saved to: %s\n", cert_file);
    printf("==> CA certificate key saved to: %s\n", key_file);
out:
    kr_x509_pair_free(&pair);
    names_free(&permitted);
    multi_free(&extra, 1);
    free(rest);
    return rc;
}

static const char CERT_ABOUT[] =
    "Create a new TLS certificate, signed by the CA, to use within the\n"
    "keyraft cluster TLS configuration.  Use -server, -client or -cli to\n"
    "pick the role.  The certificate and its ECDSA P-256 key are written\n"
    "to <region>-<role>-<domain>.pem and <region>-<role>-<domain>-key.pem\n"
    "(mode 0600) in the current directory; existing files are never\n"
    "overwritten.\n"
    "\n"
    "The certificate's names are <role>.<region>.<domain>, the same\n"
    "under the keyraft domain and the global region, \"localhost\" and,\n"
    "for -server and -client, 127.0.0.1.  Its extended key usages are\n"
    "TLS server and client authentication.";

static const char SERVER_WARNING[] =
    "==> WARNING: Server Certificates grants authority to become a\n"
    "    server and access all state in the cluster including root keys\n"
    "    and all ACL tokens. Do not distribute them to production hosts\n"
    "    that are not server nodes. Store them as securely as CA keys.\n";

/* The DNS names of a certificate for role in region and domain, after the
 * user's: Nomad adds the name under the built-in domain and, outside the
 * global region, under the global region too. */
static int role_names(struct names *dns, const char *role, const char *region,
                      const char *domain, const char *node)
{
    int rv = names_addf(dns, "%s.%s.%s", role, region, domain);

    if (rv == 0 && node != NULL)
        rv = names_addf(dns, "%s.server.%s.%s", node, region, domain);
    if (rv == 0)
        rv = names_addf(dns, "%s.%s.%s", role, region, DEFAULT_DOMAIN);
    if (rv == 0)
        rv = names_addf(dns, "%s.%s.%s", role, DEFAULT_REGION, DEFAULT_DOMAIN);
    if (rv == 0)
        rv = names_add(dns, "localhost", 9);
    return rv;
}

int kr_cli_tls_cert_create_main(int argc, char **argv)
{
    struct multi extra[2] = {{"additional-dnsname", NULL, 0},
                             {"additional-ipaddress", NULL, 0}};
    struct kr_x509_pair pair = {0};
    struct names dns = {0}, ips = {0};
    struct kr_buf ca = {0};
    struct kr_secret *ca_key = NULL;
    const char *ca_file = NULL, *key_file = NULL, *domain = NULL;
    const char *region = NULL, *cluster_region = NULL, *node = NULL;
    const char *unused = NULL, *role, *saved;
    char **rest = NULL, errmsg[KR_ERRMSG_SIZE], name[256];
    char cert_out[256], key_out[256], ca_default[256], key_default[256];
    bool server = false, client = false, cli = false;
    int days = CERT_DAYS, nrest = 0, argi = 0, rc = KR_CLI_EXIT_ERROR;
    const struct kr_cli_flag flags[] = {
        {"additional-dnsname", KR_CLI_FLAG_STRING, &unused, NULL, "<name>",
         "Provide an additional dnsname for Subject Alternative Names.\n"
         "\"localhost\" is always included. This flag may be provided\n"
         "multiple times.",
         NULL},
        {"additional-ipaddress", KR_CLI_FLAG_STRING, &unused, NULL, "<ip>",
         "Provide an additional ipaddress for Subject Alternative Names.\n"
         "\"127.0.0.1\" is always included in -server and -client\n"
         "certificates. This flag may be provided multiple times.",
         NULL},
        {"ca", KR_CLI_FLAG_STRING, &ca_file, NULL, "<file>",
         "Provide path to the certificate authority certificate. Defaults\n"
         "to <domain>-agent-ca.pem.",
         NULL},
        {"cli", KR_CLI_FLAG_BOOL, &cli, NULL, NULL,
         "Generate a certificate for use with the keyraft CLI.", NULL},
        {"client", KR_CLI_FLAG_BOOL, &client, NULL, NULL,
         "Generate a client certificate.", NULL},
        {"cluster-region", KR_CLI_FLAG_STRING, &cluster_region, NULL,
         "<region>", "DEPRECATED please use -region.", NULL},
        {"days", KR_CLI_FLAG_INT, &days, NULL, "<days>",
         "Provide number of days the certificate is valid for from now\n"
         "on. Defaults to 1 year.",
         NULL},
        {"domain", KR_CLI_FLAG_STRING, &domain, NULL, "<domain>",
         "Provide the domain. Defaults to \"keyraft\".", NULL},
        {"key", KR_CLI_FLAG_STRING, &key_file, NULL, "<file>",
         "Provide path to the certificate authority key. Defaults to\n"
         "<domain>-agent-ca-key.pem.",
         NULL},
        {"node", KR_CLI_FLAG_STRING, &node, NULL, "<name>",
         "With -server: also include <node>.server.<region>.<domain>.", NULL},
        {"region", KR_CLI_FLAG_STRING, &region, NULL, "<region>",
         "Provide the region. Defaults to \"global\".", "KEYRAFT_REGION"},
        {"server", KR_CLI_FLAG_BOOL, &server, NULL, NULL,
         "Generate a server certificate.", NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "tls cert create",
        "[options] (-server | -client | -cli)",
        CERT_ABOUT,
        "Certificate Create Options",
        flags,
        NULL,
    };
    struct kr_x509_cert_opts o = {0};

    kr_cli_protect_secrets();
    if (take_repeated(flags, argc, argv, extra, 2, &rest, &nrest, errmsg) !=
        0) {
        rc = kr_cli_usage_error(&cmd, "%s", errmsg);
        goto out;
    }
    if (!kr_cli_parse_args(&cmd, nrest, rest, 0, 0, MSG_NO_ARGS, &argi, &rc))
        goto out;
    kr_cli_flags_env(flags, env);
    if ((int)server + (int)client + (int)cli != 1) {
        rc = kr_cli_usage_error(&cmd,
                                "Please provide either -server, -client, or "
                                "-cli");
        goto out;
    }
    role = server ? "server" : client ? "client" : "cli";
    /* Nomad: -cluster-region wins, then -region, then "global". */
    if (cluster_region != NULL && cluster_region[0] != '\0')
        region = cluster_region;
    if (region == NULL || region[0] == '\0')
        region = DEFAULT_REGION;
    if (domain == NULL)
        domain = DEFAULT_DOMAIN;
    if (!check_label(&cmd, "domain", domain, &rc) ||
        !check_label(&cmd, "region", region, &rc) ||
        (node != NULL && !check_label(&cmd, "node", node, &rc)))
        goto out;
    if (node != NULL && !server) {
        rc = kr_cli_usage_error(&cmd, "-node requires -server");
        goto out;
    }
    if (days < 1 || days > KR_X509_MAX_DAYS) {
        rc = kr_cli_usage_error(&cmd, "-days must be between 1 and %d",
                                KR_X509_MAX_DAYS);
        goto out;
    }
    if (ca_file != NULL && ca_file[0] == '\0') {
        rc = kr_cli_usage_error(&cmd, "Please provide the ca");
        goto out;
    }
    if (key_file != NULL && key_file[0] == '\0') {
        rc = kr_cli_usage_error(&cmd, "Please provide the key");
        goto out;
    }
    snprintf(ca_default, sizeof(ca_default), "%s-agent-ca.pem", domain);
    snprintf(key_default, sizeof(key_default), "%s-agent-ca-key.pem", domain);
    if (ca_file == NULL)
        ca_file = ca_default;
    if (key_file == NULL)
        key_file = key_default;
    snprintf(name, sizeof(name), "%s.%s.%s", role, region, domain);
    snprintf(cert_out, sizeof(cert_out), "%s-%s-%s.pem", region, role, domain);
    snprintf(key_out, sizeof(key_out), "%s-%s-%s-key.pem", region, role,
             domain);
    if (names_add_trimmed(&dns, &extra[0]) != 0 ||
        names_add_trimmed(&ips, &extra[1]) != 0 ||
        role_names(&dns, role, region, domain, node) != 0 ||
        (!cli && names_add(&ips, "127.0.0.1", 9) != 0)) {
        kr_cli_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < ips.n; i++) {
        if (!valid_ip(ips.v[i])) {
            rc = kr_cli_usage_error(&cmd,
                                    "invalid -additional-ipaddress "
                                    "\"%s\"",
                                    ips.v[i]);
            goto out;
        }
    }
    if (exists(cert_out)) {
        kr_cli_error("Certificate file '%s' already exists", cert_out);
        goto out;
    }
    if (exists(key_out)) {
        kr_cli_error("Key file '%s' already exists", key_out);
        goto out;
    }
    if (kr_cli_read_file(ca_file, &ca, errmsg) != 0) {
        kr_cli_error("reading CA: %s", errmsg);
        goto out;
    }
    if (read_secret_file(key_file, &ca_key, errmsg) != 0) {
        kr_cli_error("reading CA key: %s", errmsg);
        goto out;
    }
    if (server)
        fputs(SERVER_WARNING, stderr);
    printf("==> Using CA file %s and CA key %s\n", ca_file, key_file);
    o.common_name = name;
    o.dns_names = (const char *const *)dns.v;
    o.n_dns_names = dns.n;
    o.ip_addresses = (const char *const *)ips.v;
    o.n_ip_addresses = ips.n;
    o.ext_key_usage = KR_X509_EKU_SERVER_AUTH | KR_X509_EKU_CLIENT_AUTH;
    o.days = days;
    if (kr_x509_cert_create((const char *)ca.data, ca.len, ca_key, &o, &pair,
                            errmsg) != 0) {
        kr_cli_error("%s", errmsg);
        goto out;
    }
    rc = write_pair(&pair, cert_out, key_out);
    if (rc != KR_CLI_EXIT_OK)
        goto out;
    /* Nomad's wording, capitals included. */
    saved = server ? "Server" : client ? "Client" : "Cli";
    printf("==> %s Certificate saved to %s\n", saved, cert_out);
    saved = server ? "Server" : client ? "Client" : "CLI";
    printf("==> %s Certificate key saved to %s\n", saved, key_out);
out:
    kr_x509_pair_free(&pair);
    kr_secret_free(ca_key);
    kr_buf_free(&ca);
    names_free(&dns);
    names_free(&ips);
    multi_free(extra, 2);
    free(rest);
    return rc;
}
