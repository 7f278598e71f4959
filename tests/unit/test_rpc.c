/*
 * Unit tests for the RPC listener in src/cluster/rpc.c: a call answered
 * normally, and the listener closed while a call's answer is still being
 * written (as when a removed server stops): the connection is freed once,
 * after its write callback, and the loop closes cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cluster/rpc.h"
#include "common/buf.h"

struct fixture {
    uv_loop_t loop;
    struct kr_rpc *rpc;
    uv_check_t check;
    bool close_after_call; /* close the listener right after on_call */
    int calls;             /* on_call */
    int answers;           /* the dialler's callback */
    int status;
    char resp[16];
};

/* A loopback port that was free a moment ago. */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static int on_call(void *arg, const uint8_t *req, size_t len,
                   struct kr_buf *resp)
{
    struct fixture *f = arg;

    f->calls++;
    assert_int_equal(len, 4);
    assert_memory_equal(req, "ping", 4);
    kr_buf_append(resp, "pong", 4);
    if (f->close_after_call) {
        /* More than the sockets hold: the write stays pending until the
         * dialler reads. */
        static uint8_t big[8 << 20];

        kr_buf_append(resp, big, sizeof(big));
    }
    return 0;
}

/* Runs after the poll phase in which the call was dispatched, while its
 * answer is still being written. */
static void on_check(uv_check_t *h)
{
    struct fixture *f = h->data;

    if (f->calls == 0)
        return;
    if (f->close_after_call && f->rpc != NULL) {
        kr_rpc_close(f->rpc);
        f->rpc = NULL;
    }
    uv_check_stop(h);
}

static void answered(void *arg, int status, const uint8_t *resp, size_t len)
{
    struct fixture *f = arg;

    f->answers++;
    f->status = status;
    if (status == 0 && len < sizeof(f->resp))
        memcpy(f->resp, resp, len);
    if (f->rpc != NULL) {
        kr_rpc_close(f->rpc);
        f->rpc = NULL;
    }
    uv_close((uv_handle_t *)&f->check, NULL);
}

static void run_call(struct fixture *f)
{
    struct kr_rpc_handlers h = {.on_call = on_call, .arg = f};
    char errmsg[256], addr[64];
    int port = free_port();

    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(
        kr_rpc_listen(&f->rpc, &f->loop, "127.0.0.1", port, &h, errmsg), 0);
    uv_check_init(&f->loop, &f->check);
    f->check.data = f;
    uv_check_start(&f->check, on_check);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(kr_rpc_call(&f->loop, addr, "ping", 4, 5000, answered, f),
                     0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    /* Every handle is closed and freed. */
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_call_is_answered(void **state)
{
    struct fixture f = {0};

    (void)state;
    run_call(&f);
    assert_int_equal(f.calls, 1);
    assert_int_equal(f.answers, 1);
    assert_int_equal(f.status, 0);
    assert_string_equal(f.resp, "pong");
}

static void test_close_while_the_answer_is_written(void **state)
{
    struct fixture f = {.close_after_call = true};

    (void)state;
    /* Before the fix, the write callback ran on the freed connection and
     * closed its socket a second time (libuv's assertion aborted). */
    run_call(&f);
    assert_int_equal(f.calls, 1);
    assert_int_equal(f.answers, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_is_answered),
        cmocka_unit_test(test_close_while_the_answer_is_written),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
