/*
 * `keyraft agent`: loads the configuration, hardens the process (no core
 * dumps, not dumpable, memory locked, secret heap), then runs raft, the
 * keyring and the HTTP API on one libuv loop.
 *
 * Startup is bounded: the server serves HTTP only once its raft log has
 * been replayed, an active key exists and every key in the state is
 * decrypted here.  If that has not happened within server.start_timeout
 * it exits and names the keys it was waiting for.
 *
 * While leader, it makes sure the keyring has an active key: on gaining
 * leadership with none, it generates one and proposes it.
 */
#include "agent/agent.h"
#include "agent/keyjobs.h"

#include <errno.h>
#include <execinfo.h>
#include <ftw.h>
#include <jansson.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <raft.h>
#include <uv.h>

#include "cluster/raft.h"
#include "cluster/rpc.h"
#include "cluster/freeze.h"
#include "cluster/rheap.h"
#include "common/err.h"
#include "common/log.h"
#include "common/thread.h"
#include "common/time.h"
#include "config/config.h"
#include "crypto/secmem.h"
#include "crypto/tls.h"
#include "http/http.h"
#include "keyring/keyring.h"
#include "kms/kms.h"
#include "snapshot/restore.h"
#include "state/state.h"

#define SECMEM_SIZE (32u * 1024 * 1024)
#define TICK_MS 50
#define MAX_CONFIG_PATHS 32

struct agent {
    uv_loop_t loop;
    struct kr_config *cfg;
    char *data_dir;
    bool remove_data_dir; /* dev mode: a temp dir of our own */
    struct kr_kms **providers;
    size_t n_providers;
    struct kr_state *state;
    struct kr_raft *raft;
    struct kr_keyring *keyring;
    struct kr_keyjobs *keyjobs;
    struct kr_restore *restore;
    struct kr_http *http;
    struct ssl_ctx_st *https_ctx;      /* tls.http */
    struct ssl_ctx_st *rpc_server_ctx; /* tls.rpc */
    struct ssl_ctx_st *rpc_client_ctx;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    uint64_t start_ms;
    uint64_t replay_target; /* raft last index when we started */
    bool ready;
    bool initializing; /* a first key is being generated or proposed */
    bool stopping;
    /* Each loop turn's busy time (check_busy). */
    uv_prepare_t busy;
    uint64_t busy_mark_ns, busy_mark_idle_ns;
    int exit_code;
};

/* jansson holds plaintext Items: wipe every block it frees. */
static void *wiping_malloc(size_t n)
{
    return malloc(n);
}

static void wiping_free(void *p)
{
    if (p != NULL) {
        explicit_bzero(p, malloc_usable_size(p));
        free(p);
    }
}

static bool under_sanitizer(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return true;
#else
    return false;
#endif
#else
    return false;
#endif
}

/*
 * The locked secret pool: SECMEM_SIZE when the memlock limit allows (root,
 * CAP_IPC_LOCK, or a raised ulimit -l), else the largest power of two that
 * fits in half the limit, so an unprivileged `make run` still starts with
 * every key locked.  Below 1 MiB the agent refuses to start.
 */
static size_t secmem_size(void)
{
    struct rlimit rl;
    size_t size = SECMEM_SIZE;

    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        geteuid() == 0)
        return size;
    while (size > (1u << 20) && size > rl.rlim_cur / 2)
        size /= 2;
    if (size < SECMEM_SIZE)
        KR_WARN("agent",
                "RLIMIT_MEMLOCK is %llu bytes: using a %zu KiB secret memory "
                "pool instead of %u KiB (fewer large Variables can be in "
                "flight at once); raise ulimit -l to lift this",
                (unsigned long long)rl.rlim_cur, size / 1024,
                SECMEM_SIZE / 1024);
    return size;
}

/* A fatal signal prints the stack as return addresses (module+offset,
 * for addr2line) and nothing else: no memory contents, so no secrets.
 * Core dumps are off, so this is the only trace a crash leaves.  The
 * handler then restores the default action and re-raises. */
static void on_fatal_signal(int sig)
{
    static const char head[] = "keyraft: fatal signal, backtrace:\n";
    void *frames[64];
    int n;

    if (write(STDERR_FILENO, head, sizeof(head) - 1) < 0) {
        /* nothing else can be done in a dying process */
    }
    n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_fatal_signals(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    void *frames[1];

    /* The first backtrace() loads libgcc; do it now, not in the handler. */
    (void)backtrace(frames, 1);
    if (under_sanitizer())
        return; /* ASan prints a better report */
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], on_fatal_signal);
}

/* No core dumps, not ptrace-able by other users, memory never swapped;
 * as many descriptors as the hard limit allows (as Go programs such as
 * Nomad get by default): client connections, raft's, and the removed
 * raft files whose blocks are still being freed (snapwrite.h). */
static int harden(char *errmsg)
{
    struct rlimit rl = {0, 0}, files;

    if (setrlimit(RLIMIT_CORE, &rl) != 0 ||
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return kr_errf(errmsg, KR_EIO, "cannot disable core dumps: %s",
                       strerror(errno));
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 &&
        files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &files);
    }
    /* ASan reserves terabytes of shadow memory; locking it all fails.
     * MCL_ONFAULT: a page is locked when first touched, not when mapped.
     * Without it every large allocation (a raft snapshot's buffer is the
     * size of the state) is faulted in whole inside mmap, holding the
     * process's mmap lock for seconds, and the loop thread's own page
     * faults and frees wait behind it. */
    if (!under_sanitizer() &&
        mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0)
        KR_WARN("agent",
                "mlockall failed (%s): memory may be swapped; raise "
                "RLIMIT_MEMLOCK or grant CAP_IPC_LOCK",
                strerror(errno));
    if (!kr_thread_can_background())
        KR_INFO("agent",
                "libuv's workers free and allocate the memory around raft "
                "snapshots at the loop's priority: lowering theirs needs "
                "the right to raise it back (CAP_SYS_NICE, or RLIMIT_NICE "
                "20: LimitNICE=20 in a systemd unit)");
    return kr_secmem_init(secmem_size(), errmsg);
}

static void stop(struct agent *a, int code);
static void on_forwarded_http(void *arg, uv_stream_t *stream);
static void on_fatal(void *arg, const char *why);

static void on_signal(uv_signal_t *h, int signum)
{
    struct agent *a = h->data;

    KR_INFO("agent", "caught signal %d, shutting down", signum);
    stop(a, 0);
}

/* ---- keyring initialisation (leader) ---- */

static void init_applied(void *arg, int status, uint64_t index, int outcome)
{
    struct agent *a = arg;

    a->initializing = false;
    if (status != 0 || outcome != 0)
        KR_WARN("keyring", "initial root key not committed: %s",
                kr_strerror(status ? status : outcome));
    else
        KR_INFO("keyring", "initialized keyring at index %llu",
                (unsigned long long)index);
}

static void init_generated(void *arg, int status, struct kr_buf *entry,
                           const struct kr_root_key *meta, const char *errmsg)
{
    struct agent *a = arg;
    int rv;

    if (status != 0 || a->stopping) {
        if (status != KR_ESHUTDOWN)
            KR_ERROR("keyring", "cannot create the initial root key: %s",
                     errmsg);
        a->initializing = false;
        return;
    }
    rv = kr_raft_apply(a->raft, entry, init_applied, a);
    if (rv != 0) {
        KR_WARN("keyring", "proposing initial root key %s: %s", meta->key_id,
                kr_strerror(rv));
        a->initializing = false;
    }
}

static void ensure_active_key(struct agent *a)
{
    int rv;

    if (a->initializing || !kr_raft_is_leader(a->raft) ||
        kr_raft_last_applied(a->raft) < kr_raft_last_index(a->raft) ||
        kr_state_key_active(a->state) != NULL)
        return;
    a->initializing = true;
    rv = kr_keyring_generate(a->keyring, KR_KEY_ACTIVE, 0, false,
                             kr_time_now_ns(), init_generated, a);
    if (rv != 0) {
        KR_ERROR("keyring", "cannot create the initial root key: %s",
                 rv == KR_EINVAL ? "no active keyring provider"
                                 : kr_strerror(rv));
        a->initializing = false;
    }
}

static const char *rekey_error(void *arg)
{
    return kr_keyjobs_rekey_error(arg);
}

/* ---- readiness and the periodic tick ---- */

static void become_ready(struct agent *a)
{
    char errmsg[KR_ERRMSG_SIZE];
    struct kr_http_deps deps = {
        .loop = &a->loop,
        .cfg = a->cfg,
        .state = a->state,
        .keyring = a->keyring,
        .raft = a->raft,
        .ssl_ctx = a->https_ctx,
        .rekey_error = rekey_error,
        .rekey_error_arg = a->keyjobs,
        .http2 = a->cfg->tls.http2,
        .data_dir = a->data_dir,
        .restore = a->restore,
    };

    if (kr_http_start(&a->http, &deps, a->cfg->bind_addr, a->cfg->http_port,
                      errmsg) != 0) {
        KR_ERROR("agent", "%s", errmsg);
        stop(a, 1);
        return;
    }
    a->ready = true;
    KR_INFO("agent", "ready: %zu root key(s), %zu variable(s)",
            kr_state_key_count(a->state), kr_state_var_count(a->state));
}

/*
 * How long each turn of the loop was busy: the time since the last turn
 * less the time the loop spent waiting for events (UV_METRICS_IDLE_TIME,
 * kr_freeze_enable).  Raft heartbeats, HTTP and forwarding all waited
 * that long.  A late tick saw only the turns that held it up; this sees
 * every turn, each raft snapshot's compaction among them.  Also where
 * libraft's frees of a turn go to their thread (cluster/rheap.h).
 */
#define BUSY_WARN_MS 500
#define BUSY_DEBUG_MS 20

static void check_busy(uv_prepare_t *h)
{
    struct agent *a = h->data;
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
    uint64_t busy_ms;

    if (a->busy_mark_ns != 0 && idle >= a->busy_mark_idle_ns &&
        now - a->busy_mark_ns >= idle - a->busy_mark_idle_ns) {
        busy_ms =
            (now - a->busy_mark_ns - (idle - a->busy_mark_idle_ns)) / 1000000u;
        if (busy_ms > BUSY_WARN_MS)
            KR_WARN("agent", "the event loop was busy for %llu ms in one turn",
                    (unsigned long long)busy_ms);
        else if (busy_ms > BUSY_DEBUG_MS)
            KR_DEBUG("agent", "the event loop was busy for %llu ms in one turn",
                     (unsigned long long)busy_ms);
    }
    a->busy_mark_ns = now;
    a->busy_mark_idle_ns = idle;
    kr_rheap_turn();
}

static void on_tick(uv_timer_t *t)
{
    struct agent *a = t->data;
    char ids[2048];
    uint64_t timeout_ms;

    if (a->stopping)
        return;
    kr_rheap_flush();
    kr_keyring_sync(a->keyring);
    kr_raft_observe(a->raft);
    ensure_active_key(a);
    kr_keyjobs_tick(a->keyjobs);
    kr_restore_tick(a->restore);
    if (a->ready)
        return;
    /* While discovery looks for the other servers there is no clock: a
     * cluster may take as long as its operators take to start it. */
    if (!kr_raft_started(a->raft))
        return;
    if (a->start_ms == 0) {
        /* start_timeout covers replaying our own log and decrypting the
         * keys it holds, as in Nomad. */
        a->start_ms = kr_time_mono_ms();
        a->replay_target = kr_raft_last_index(a->raft);
    }
    if (kr_raft_last_applied(a->raft) >= a->replay_target &&
        kr_keyring_pending(a->keyring, NULL, 0) == 0) {
        become_ready(a);
        return;
    }
    timeout_ms = (uint64_t)(a->cfg->server.start_timeout / KR_NS_PER_MS);
    if (kr_time_mono_ms() - a->start_ms < timeout_ms)
        return;
    if (kr_keyring_pending(a->keyring, ids, sizeof(ids)) > 0) {
        const char *why = NULL;
        char first[KR_UUID_LEN + 1];
        memcpy(first, ids, KR_UUID_LEN);
        first[KR_UUID_LEN] = '\0';
        why = kr_keyring_last_error(a->keyring, first);
        KR_ERROR("agent",
                 "failed to wait for keyring decryption to complete: keyring "
                 "is not ready - waiting for keys %s%s%s",
                 ids, why ? ": " : "", why ? why : "");
    } else {
        KR_ERROR("agent", "raft log replay did not finish within "
                          "start_timeout; is there a cluster leader?");
    }
    stop(a, 1);
}

static void after_apply(void *arg)
{
    struct agent *a = arg;

    if (a->keyring != NULL)
        kr_keyring_sync(a->keyring);
}

/* A request forwarded to us over the RPC port: h2o serves it like any
 * other connection, once the HTTP server runs. */
static void on_forwarded_http(void *arg, uv_stream_t *stream)
{
    struct agent *a = arg;

    if (a->http == NULL)
        uv_close((uv_handle_t *)stream, (uv_close_cb)raft_free);
    else
        kr_http_accept(a->http, stream);
}

static void on_fatal(void *arg, const char *why)
{
    struct agent *a = arg;

    KR_ERROR("agent", "stopping: %s", why);
    stop(a, 1);
}

/* ---- shutdown ---- */

static void raft_closed(void *arg)
{
    struct agent *a = arg;

    a->raft = NULL;
}

static void stop(struct agent *a, int code)
{
    if (a->stopping)
        return;
    a->stopping = true;
    a->exit_code = code;
    uv_timer_stop(&a->tick);
    uv_close((uv_handle_t *)&a->tick, NULL);
    uv_close((uv_handle_t *)&a->busy, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    /* New requests get 503 from here on; requests waiting on raft get
     * their answer when raft closes and fails them. */
    kr_http_close(a->http);
    a->http = NULL;
    /* Its proposals in flight come back when raft closes. */
    kr_keyjobs_close(a->keyjobs);
    a->keyjobs = NULL;
    /* A restore in flight fails; its proposals come back as raft closes. */
    kr_restore_close(a->restore);
    a->restore = NULL;
    if (a->raft != NULL)
        kr_raft_close(a->raft, raft_closed, a);
    /* Cancels retry timers and waiters; after_apply sees NULL from now on,
     * and the keyring frees itself once its worker jobs return. */
    kr_keyring_close(a->keyring);
    a->keyring = NULL;
}

/* ---- setup ---- */

#define HELP_REQUESTED 3

/* -h prints to stdout and succeeds; a usage error prints to stderr. */
static int usage(FILE *out, int code)
{
    fprintf(out,
            "Usage: keyraft agent [-dev] [-config PATH]...\n"
            "\n"
            "  Runs a keyraft server.\n"
            "\n"
            "  -dev          Single in-memory-config server with data in a "
            "temp dir,\n"
            "                HTTP on 127.0.0.1:%d.\n"
            "  -config PATH  An HCL or JSON file, or a directory of them "
            "(repeatable;\n"
            "                files merge in the order given, a directory's "
            "in lexical order).\n",
            KR_DEFAULT_HTTP_PORT);
    return code;
}

static int make_data_dir(struct agent *a, char *errmsg)
{
    if (a->cfg->data_dir == NULL) {
        char tmpl[] = "/tmp/keyraft-dev-XXXXXX";
        if (mkdtemp(tmpl) == NULL)
            return kr_errf(errmsg, KR_EIO, "cannot create a temp dir: %s",
                           strerror(errno));
        a->data_dir = strdup(tmpl);
        a->remove_data_dir = true;
    } else {
        if (mkdir(a->cfg->data_dir, 0700) != 0 && errno != EEXIST)
            return kr_errf(errmsg, KR_EIO, "data_dir %s: %s", a->cfg->data_dir,
                           strerror(errno));
        a->data_dir = strdup(a->cfg->data_dir);
    }
    return a->data_dir ? 0 : kr_errf(errmsg, KR_ENOMEM, "out of memory");
}

static int open_providers(struct agent *a, char *errmsg)
{
    a->providers = calloc(a->cfg->n_keyrings + 1, sizeof(*a->providers));
    if (a->providers == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    for (size_t i = 0; i < a->cfg->n_keyrings; i++) {
        int rv = kr_kms_open(&a->providers[i], &a->cfg->keyrings[i], errmsg);
        if (rv != 0)
            return rv;
        a->n_providers++;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* bootstrap_expect > 1 needs peers to find; every peer must be an
 * IPv4 (or localhost) host:port, since names are not resolved yet. */
static int check_join(const struct kr_config *cfg, char *errmsg)
{
    const struct kr_config_strings *j = &cfg->server.server_join.retry_join;
    struct sockaddr_in sa;

    if (cfg->server.bootstrap_expect > 1 && j->n == 0)
        return kr_errf(errmsg, KR_EINVAL,
                       "server.bootstrap_expect = %d needs "
                       "server.server_join.retry_join to find the other "
                       "servers",
                       cfg->server.bootstrap_expect);
    for (size_t i = 0; i < j->n; i++)
        if (kr_rpc_parse_address(j->v[i], &sa) != 0)
            return kr_errf(errmsg, KR_EINVAL,
                           "server.server_join.retry_join: \"%s\" is not an "
                           "IPv4 host:port (names are not resolved yet)",
                           j->v[i]);
    return 0;
}

static int open_tls(struct agent *a, char *errmsg)
{
    const struct kr_config_tls *t = &a->cfg->tls;
    struct kr_tls_config tc = {
        .ca_file = t->ca_file,
        .cert_file = t->cert_file,
        .key_file = t->key_file,
        .verify_peer = t->verify_https_client,
        .min_version = t->tls_min_version,
    };

    int rv = 0;

    if (t->rpc && (t->ca_file == NULL || *t->ca_file == '\0'))
        return kr_errf(errmsg, KR_EINVAL,
                       "tls.rpc needs tls.ca_file: servers verify each "
                       "other's certificates against it");
    if (t->http)
        rv = kr_tls_server_ctx(&a->https_ctx, &tc, errmsg);
    if (rv == 0 && t->rpc) {
        char name[300];
        /* Servers talk only to servers: a client certificate is always
         * required on the RPC port. */
        tc.verify_peer = true;
        rv = kr_tls_server_ctx(&a->rpc_server_ctx, &tc, errmsg);
        if (rv == 0)
            rv = kr_tls_client_ctx(&a->rpc_client_ctx, &tc, errmsg);
        if (rv == 0) {
            snprintf(name, sizeof(name), "server.%s.keyraft", a->cfg->region);
            kr_rpc_set_tls(a->rpc_server_ctx, a->rpc_client_ctx,
                           t->verify_server_hostname ? name : NULL);
        }
    }
    return rv;
}

static void cleanup(struct agent *a)
{
    kr_tls_ctx_free(a->https_ctx);
    kr_tls_ctx_free(a->rpc_server_ctx);
    kr_tls_ctx_free(a->rpc_client_ctx);
    for (size_t i = 0; i < a->n_providers; i++)
        kr_kms_free(a->providers[i]);
    free(a->providers);
    kr_state_free(a->state);
    if (a->remove_data_dir && a->data_dir != NULL)
        nftw(a->data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(a->data_dir);
    kr_config_free(a->cfg);
}

static int load_config(struct agent *a, int argc, char **argv, char *errmsg)
{
    bool dev = false;
    const char *paths[MAX_CONFIG_PATHS];
    size_t n_paths = 0;
    int rv;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] == '-' && arg[1] == '-')
            arg++;
        if (strcmp(arg, "-dev") == 0) {
            dev = true;
        } else if (strcmp(arg, "-config") == 0 && i + 1 < argc) {
            if (n_paths == MAX_CONFIG_PATHS)
                return kr_errf(errmsg, KR_EINVAL, "too many -config flags");
            paths[n_paths++] = argv[++i];
        } else if (strncmp(arg, "-config=", 8) == 0) {
            if (n_paths == MAX_CONFIG_PATHS)
                return kr_errf(errmsg, KR_EINVAL, "too many -config flags");
            paths[n_paths++] = arg + 8;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "-help") == 0) {
            return HELP_REQUESTED;
        } else {
            kr_errf(errmsg, KR_EINVAL, "unknown flag %s", argv[i]);
            return 2;
        }
    }
    if (!dev && n_paths == 0) {
        kr_errf(errmsg, KR_EINVAL, "one of -dev or -config is required");
        return 2;
    }
    rv = kr_config_new(&a->cfg, dev);
    for (size_t i = 0; rv == 0 && i < n_paths; i++)
        rv = kr_config_merge_path(a->cfg, paths[i], errmsg);
    if (rv == 0)
        rv = kr_config_finish(a->cfg, errmsg);
    /* keyraft has no client-only mode: every agent is a server. */
    if (rv == 0 && !a->cfg->server.enabled)
        rv = kr_errf(errmsg, KR_EINVAL,
                     "server.enabled is false, but keyraft agents are "
                     "servers: set server { enabled = true }");
    return rv;
}

int kr_agent_main(int argc, char **argv)
{
    struct agent a;
    char errmsg[KR_ERRMSG_SIZE] = "";
    char raft_addr[300];
    struct kr_raft_config rc;
    int rv;

    memset(&a, 0, sizeof(a));
    rv = load_config(&a, argc, argv, errmsg);
    if (rv == HELP_REQUESTED)
        return usage(stdout, 0);
    if (rv == 2) {
        if (errmsg[0] != '\0')
            fprintf(stderr, "keyraft agent: %s\n\n", errmsg);
        kr_config_free(a.cfg);
        return usage(stderr, 2);
    }
    if (rv != 0) {
        fprintf(stderr, "keyraft agent: %s\n", errmsg);
        kr_config_free(a.cfg);
        return 1;
    }
    kr_log_init(a.cfg->log_level, a.cfg->log_json);
    json_set_alloc_funcs(wiping_malloc, wiping_free);
    signal(SIGPIPE, SIG_IGN);
    catch_fatal_signals();
    rv = harden(errmsg);
    if (rv == 0)
        rv = make_data_dir(&a, errmsg);
    if (rv == 0)
        rv = open_providers(&a, errmsg);
    if (rv == 0)
        rv = open_tls(&a, errmsg);
    if (rv == 0)
        rv = kr_state_new(&a.state);
    if (rv != 0) {
        KR_ERROR("agent", "%s", errmsg[0] ? errmsg : kr_strerror(rv));
        cleanup(&a);
        return 1;
    }
    uv_loop_init(&a.loop);
    kr_freeze_enable(&a.loop);
    if (kr_rheap_install() != 0) {
        KR_WARN("agent", "libraft frees stay on the event loop: no thread");
    } else {
        unsigned arena;

        if (kr_rheap_arena(&arena))
            KR_DEBUG("agent",
                     "libraft's blocks come from jemalloc arena %u, which "
                     "keeps its pages for reuse",
                     arena);
    }
    rv = kr_keyring_new(&a.keyring, &a.loop, a.providers, a.n_providers,
                        a.state);
    if (rv != 0) {
        KR_ERROR("agent", "%s", kr_strerror(rv));
        goto fail_loop;
    }
    if (check_join(a.cfg, errmsg) != 0) {
        KR_ERROR("agent", "%s", errmsg);
        goto fail_loop;
    }
    if (strchr(a.cfg->bind_addr, ':') != NULL) {
        KR_ERROR("agent",
                 "bind_addr %s: IPv6 addresses are not supported "
                 "yet; use an IPv4 address",
                 a.cfg->bind_addr);
        goto fail_loop;
    }
    snprintf(raft_addr, sizeof(raft_addr), "%s:%d",
             strcmp(a.cfg->bind_addr, "0.0.0.0") == 0 ? "127.0.0.1"
                                                      : a.cfg->bind_addr,
             a.cfg->rpc_port);
    rc = (struct kr_raft_config){
        .loop = &a.loop,
        .data_dir = a.data_dir,
        .bind_host = a.cfg->bind_addr,
        .rpc_port = a.cfg->rpc_port,
        .address = raft_addr,
        .bootstrap_expect = a.cfg->server.bootstrap_expect,
        .retry_join =
            (const char *const *)a.cfg->server.server_join.retry_join.v,
        .n_retry_join = a.cfg->server.server_join.retry_join.n,
        .retry_interval_ms =
            (uint64_t)(a.cfg->server.server_join.retry_interval / KR_NS_PER_MS),
        .on_http = on_forwarded_http,
        .on_fatal = on_fatal,
        .state = a.state,
        .snapshot_threshold = (unsigned)a.cfg->server.raft_snapshot_threshold,
        .snapshot_trailing = (unsigned)a.cfg->server.raft_trailing_logs,
        .snapshot_interval_ms =
            (uint64_t)(a.cfg->server.raft_snapshot_interval / KR_NS_PER_MS),
        .snapshot_write_rate =
            (uint64_t)a.cfg->server.raft_snapshot_write_rate * 1000000u,
        .after_apply = after_apply,
        .arg = &a,
    };
    KR_INFO("agent", "starting keyraft%s, data_dir %s",
            a.cfg->dev ? " (dev)" : "", a.data_dir);
    rv = kr_raft_start(&a.raft, &rc, errmsg);
    if (rv != 0) {
        KR_ERROR("agent", "%s", errmsg);
        goto fail_loop;
    }
    {
        struct kr_keyjobs_config kc = {
            .loop = &a.loop,
            .state = a.state,
            .keyring = a.keyring,
            .raft = a.raft,
            .rotation_threshold = a.cfg->server.root_key_rotation_threshold,
            .gc_interval = a.cfg->server.root_key_gc_interval,
            .gc_threshold = a.cfg->server.root_key_gc_threshold,
            .rekey_rate = (uint64_t)a.cfg->server.root_key_rekey_rate,
        };
        struct kr_restore_config rsc = {
            .loop = &a.loop,
            .raft = a.raft,
            .state = a.state,
        };
        if (kr_keyjobs_new(&a.keyjobs, &kc) != 0 ||
            kr_restore_new(&a.restore, &rsc) != 0) {
            KR_ERROR("agent", "out of memory");
            a.stopping = true;
            kr_raft_close(a.raft, raft_closed, &a);
            goto fail_loop;
        }
    }
    uv_prepare_init(&a.loop, &a.busy);
    a.busy.data = &a;
    uv_prepare_start(&a.busy, check_busy);
    uv_unref((uv_handle_t *)&a.busy);
    uv_timer_init(&a.loop, &a.tick);
    a.tick.data = &a;
    uv_timer_start(&a.tick, on_tick, 0, TICK_MS);
    uv_signal_init(&a.loop, &a.sigint);
    uv_signal_init(&a.loop, &a.sigterm);
    a.sigint.data = a.sigterm.data = &a;
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);

    uv_run(&a.loop, UV_RUN_DEFAULT);
    kr_rheap_uninstall();
    if (uv_loop_close(&a.loop) != 0)
        KR_WARN("agent", "event loop closed with handles still open");
    cleanup(&a);
    /* Joins libuv's worker threads, so their OpenSSL per-thread state is
     * released before exit. */
    uv_library_shutdown();
    KR_INFO("agent", "stopped");
    return a.exit_code;
fail_loop:
    kr_keyring_close(a.keyring);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    kr_rheap_uninstall();
    uv_loop_close(&a.loop);
    cleanup(&a);
    return 1;
}
