// The `vsock` module: stream sockets to the host over virtio-vsock (the library OS's
// <pyrite/virtio.h> vsock_* calls). Connections and listeners are streams that select.poll
// and select.select understand.
//
//   conn = vsock.connect(port, cid=vsock.HOST_CID)   # the host program at <uds_path>_<port>
//   srv = vsock.listen(port); conn = srv.accept()    # a host client's "CONNECT <port>"
//   conn.write(b"..."); conn.read(n); conn.readline(); conn.settimeout(s); conn.close()
//   vsock.cid()                                      # this VM's CID
#include <errno.h>
#include <string.h>

#include "py/runtime.h"
#include "py/stream.h"
#include "py/mperrno.h"

#include <pyrite/virtio.h>

#define PEEK_SIZE 512           // what poll reads ahead to learn whether a read would wait

typedef struct _vsock_conn_obj_t {
    mp_obj_base_t base;
    int conn;                   // -1 once closed
    bool eof;
    uint64_t timeout_us;
    size_t peek_len, peek_pos;
    uint8_t peek[PEEK_SIZE];
} vsock_conn_obj_t;

typedef struct _vsock_listener_obj_t {
    mp_obj_base_t base;
    uint32_t port;
    int pending;                // a connection poll already accepted, or -1
    uint64_t timeout_us;
} vsock_listener_obj_t;

static const mp_obj_type_t vsock_conn_type;
static const mp_obj_type_t vsock_listener_type;

static void check(long ret) {
    if (ret < 0) {
        mp_raise_OSError((int)-ret);
    }
}

static uint64_t timeout_from(mp_obj_t seconds) {
    if (seconds == mp_const_none) {
        return VSOCK_WAIT_FOREVER;
    }
    mp_float_t s = mp_obj_get_float(seconds);
    if (s < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("timeout must be None or >= 0"));
    }
    return (uint64_t)(s * 1e6);
}

static mp_obj_t new_conn(int conn) {
    vsock_conn_obj_t *o = mp_obj_malloc_with_finaliser(vsock_conn_obj_t, &vsock_conn_type);
    o->conn = conn;
    o->eof = false;
    o->timeout_us = VSOCK_WAIT_FOREVER;
    o->peek_len = o->peek_pos = 0;
    return MP_OBJ_FROM_PTR(o);
}

static mp_uint_t conn_read(mp_obj_t self_in, void *buf, mp_uint_t size, int *errcode) {
    vsock_conn_obj_t *o = MP_OBJ_TO_PTR(self_in);
    if (o->conn < 0) {
        *errcode = MP_EBADF;
        return MP_STREAM_ERROR;
    }
    if (o->peek_pos < o->peek_len) {
        size_t n = MIN(size, o->peek_len - o->peek_pos);
        memcpy(buf, o->peek + o->peek_pos, n);
        o->peek_pos += n;
        return n;
    }
    if (o->eof || size == 0) {
        return 0;
    }
    long got = vsock_read(o->conn, buf, size, o->timeout_us);
    if (got == -ETIMEDOUT) {
        *errcode = o->timeout_us == 0 ? MP_EAGAIN : MP_ETIMEDOUT;
        return MP_STREAM_ERROR;
    }
    if (got < 0) {
        *errcode = (int)-got;
        return MP_STREAM_ERROR;
    }
    o->eof = got == 0;
    return got;
}

static mp_uint_t conn_write(mp_obj_t self_in, const void *buf, mp_uint_t size, int *errcode) {
    vsock_conn_obj_t *o = MP_OBJ_TO_PTR(self_in);
    if (o->conn < 0) {
        *errcode = MP_EBADF;
        return MP_STREAM_ERROR;
    }
    long put = vsock_write(o->conn, buf, size);
    if (put < 0) {
        *errcode = (int)-put;
        return MP_STREAM_ERROR;
    }
    return put;
}

static mp_uint_t conn_ioctl(mp_obj_t self_in, mp_uint_t request, uintptr_t arg, int *errcode) {
    vsock_conn_obj_t *o = MP_OBJ_TO_PTR(self_in);
    if (request == MP_STREAM_CLOSE) {
        if (o->conn >= 0) {
            vsock_close(o->conn);
            o->conn = -1;
        }
        return 0;
    }
    if (request == MP_STREAM_POLL) {
        if (o->conn < 0) {
            return MP_STREAM_POLL_NVAL;
        }
        mp_uint_t ready = arg & MP_STREAM_POLL_WR;      // writes wait only for the peer's credit
        if ((arg & MP_STREAM_POLL_RD) && o->peek_pos == o->peek_len && !o->eof) {
            long got = vsock_read(o->conn, o->peek, PEEK_SIZE, 0);
            if (got > 0) {
                o->peek_len = got;
                o->peek_pos = 0;
            } else if (got == 0) {
                o->eof = true;
            } else if (got != -ETIMEDOUT) {
                return MP_STREAM_POLL_ERR;
            }
        }
        if ((arg & MP_STREAM_POLL_RD) && (o->peek_pos < o->peek_len || o->eof)) {
            ready |= MP_STREAM_POLL_RD;
        }
        return ready;
    }
    *errcode = MP_EINVAL;
    return MP_STREAM_ERROR;
}

static mp_obj_t conn_settimeout(mp_obj_t self_in, mp_obj_t seconds) {
    vsock_conn_obj_t *o = MP_OBJ_TO_PTR(self_in);
    o->timeout_us = timeout_from(seconds);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(conn_settimeout_obj, conn_settimeout);

static const mp_rom_map_elem_t conn_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_read), MP_ROM_PTR(&mp_stream_read_obj) },
    { MP_ROM_QSTR(MP_QSTR_recv), MP_ROM_PTR(&mp_stream_read1_obj) },
    { MP_ROM_QSTR(MP_QSTR_readinto), MP_ROM_PTR(&mp_stream_readinto_obj) },
    { MP_ROM_QSTR(MP_QSTR_readline), MP_ROM_PTR(&mp_stream_unbuffered_readline_obj) },
    { MP_ROM_QSTR(MP_QSTR_write), MP_ROM_PTR(&mp_stream_write_obj) },
    { MP_ROM_QSTR(MP_QSTR_send), MP_ROM_PTR(&mp_stream_write_obj) },
    { MP_ROM_QSTR(MP_QSTR_sendall), MP_ROM_PTR(&mp_stream_write_obj) },
    { MP_ROM_QSTR(MP_QSTR_settimeout), MP_ROM_PTR(&conn_settimeout_obj) },
    { MP_ROM_QSTR(MP_QSTR_close), MP_ROM_PTR(&mp_stream_close_obj) },
    { MP_ROM_QSTR(MP_QSTR___del__), MP_ROM_PTR(&mp_stream_close_obj) },
    { MP_ROM_QSTR(MP_QSTR___enter__), MP_ROM_PTR(&mp_identity_obj) },
    { MP_ROM_QSTR(MP_QSTR___exit__), MP_ROM_PTR(&mp_stream___exit___obj) },
};
static MP_DEFINE_CONST_DICT(conn_locals, conn_locals_table);

static const mp_stream_p_t conn_stream_p = {
    .read = conn_read,
    .write = conn_write,
    .ioctl = conn_ioctl,
};

static MP_DEFINE_CONST_OBJ_TYPE(
    vsock_conn_type, MP_QSTR_VsockConnection, MP_TYPE_FLAG_ITER_IS_STREAM,
    protocol, &conn_stream_p,
    locals_dict, &conn_locals);

// ---------------------------------------------------------------- listeners

static mp_obj_t listener_accept(size_t n_args, const mp_obj_t *args) {
    vsock_listener_obj_t *o = MP_OBJ_TO_PTR(args[0]);
    uint64_t timeout = n_args > 1 ? timeout_from(args[1]) : o->timeout_us;
    int conn = o->pending;
    o->pending = -1;
    if (conn < 0) {
        conn = vsock_accept(o->port, timeout);
        if (conn == -ETIMEDOUT && timeout == 0) {
            mp_raise_OSError(MP_EAGAIN);
        }
        check(conn);
    }
    return new_conn(conn);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(listener_accept_obj, 1, 2, listener_accept);

static mp_obj_t listener_settimeout(mp_obj_t self_in, mp_obj_t seconds) {
    vsock_listener_obj_t *o = MP_OBJ_TO_PTR(self_in);
    o->timeout_us = timeout_from(seconds);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(listener_settimeout_obj, listener_settimeout);

static mp_uint_t listener_ioctl(mp_obj_t self_in, mp_uint_t request, uintptr_t arg, int *errcode) {
    vsock_listener_obj_t *o = MP_OBJ_TO_PTR(self_in);
    if (request == MP_STREAM_POLL) {
        if ((arg & MP_STREAM_POLL_RD) && o->pending < 0) {
            int conn = vsock_accept(o->port, 0);
            if (conn >= 0) {
                o->pending = conn;
            } else if (conn != -ETIMEDOUT) {
                return MP_STREAM_POLL_ERR;
            }
        }
        return (arg & MP_STREAM_POLL_RD) && o->pending >= 0 ? MP_STREAM_POLL_RD : 0;
    }
    if (request == MP_STREAM_CLOSE) {
        return 0;               // the library OS keeps listening; a pending connection stays
    }
    *errcode = MP_EINVAL;
    return MP_STREAM_ERROR;
}

static const mp_rom_map_elem_t listener_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_accept), MP_ROM_PTR(&listener_accept_obj) },
    { MP_ROM_QSTR(MP_QSTR_settimeout), MP_ROM_PTR(&listener_settimeout_obj) },
    { MP_ROM_QSTR(MP_QSTR_close), MP_ROM_PTR(&mp_stream_close_obj) },
};
static MP_DEFINE_CONST_DICT(listener_locals, listener_locals_table);

static const mp_stream_p_t listener_stream_p = {
    .ioctl = listener_ioctl,
};

static MP_DEFINE_CONST_OBJ_TYPE(
    vsock_listener_type, MP_QSTR_VsockListener, MP_TYPE_FLAG_NONE,
    protocol, &listener_stream_p,
    locals_dict, &listener_locals);

// ---------------------------------------------------------------- module

static uint32_t port_from(mp_obj_t port_in) {
    mp_int_t port = mp_obj_get_int(port_in);
    if (port < 0 || port > 0xffffffffL) {
        mp_raise_ValueError(MP_ERROR_TEXT("port must be 0..4294967295"));
    }
    return (uint32_t)port;
}

static mp_obj_t vsock_listen_(mp_obj_t port_in) {
    uint32_t port = port_from(port_in);
    check(vsock_listen(port));
    vsock_listener_obj_t *o = mp_obj_malloc(vsock_listener_obj_t, &vsock_listener_type);
    o->port = port;
    o->pending = -1;
    o->timeout_us = VSOCK_WAIT_FOREVER;
    return MP_OBJ_FROM_PTR(o);
}
static MP_DEFINE_CONST_FUN_OBJ_1(vsock_listen_obj, vsock_listen_);

static mp_obj_t vsock_connect_(size_t n_args, const mp_obj_t *args) {
    uint32_t cid = n_args > 1 ? (uint32_t)mp_obj_get_int(args[1]) : VSOCK_HOST_CID;
    int conn = vsock_connect(cid, port_from(args[0]));
    check(conn);
    return new_conn(conn);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(vsock_connect_obj, 1, 2, vsock_connect_);

static mp_obj_t vsock_cid(void) {
    return mp_obj_new_int_from_ull(vsock_guest_cid());
}
static MP_DEFINE_CONST_FUN_OBJ_0(vsock_cid_obj, vsock_cid);

static const mp_rom_map_elem_t vsock_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_vsock) },
    { MP_ROM_QSTR(MP_QSTR_connect), MP_ROM_PTR(&vsock_connect_obj) },
    { MP_ROM_QSTR(MP_QSTR_listen), MP_ROM_PTR(&vsock_listen_obj) },
    { MP_ROM_QSTR(MP_QSTR_cid), MP_ROM_PTR(&vsock_cid_obj) },
    { MP_ROM_QSTR(MP_QSTR_HOST_CID), MP_ROM_INT(VSOCK_HOST_CID) },
};
static MP_DEFINE_CONST_DICT(vsock_module_globals, vsock_module_globals_table);

const mp_obj_module_t mp_module_vsock = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&vsock_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_vsock, mp_module_vsock);
