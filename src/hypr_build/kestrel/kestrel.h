/*
 * kestrel: hypr's guest agent, PID 1 of every microVM.  What its files share.
 *
 *   main.c      start-up order and the poll(2) loop
 *   boot.c      early mounts, modules, the kernel command line, the image root, /hypr/spec
 *   mounts.c    volumes, bind mounts and tmpfs in the image root
 *   user.c      Docker's -u: users and groups from the image's /etc/passwd and /etc/group
 *   net.c       NIC configuration (ioctl; busybox udhcpc for "dhcp")
 *   userdata.c  cloud-init user data: a NoCloud seed, or its common subset applied
 *   workload.c  the main process: spawn, exit, restart policy, shutdown
 *   exec.c      exec sessions multiplexed over the channel
 *   channel.c   the virtio-serial control channel and its frames
 *   util.c      buffers, string vectors, files, logging, boot timing, power-off
 */
#ifndef KESTREL_H
#define KESTREL_H

#define _GNU_SOURCE
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>
#include <sys/types.h>

#define NEWROOT "/newroot"
#define PORT_NAME "hypr.agent"
#define HDR 9
#define MAX_PAYLOAD 65536
#define CHUNK 16384            /* max STDOUT/STDERR payload per frame */
#define MAX_WRITE 32768        /* virtio_console takes at most this per write */
#define OUTQ_HIGH (256 * 1024) /* stop reading exec pipes above this */
#define OUTQ_LIMIT (4 << 20)   /* drop frames above this (host away for long) */
#define STDIN_HIGH (1 << 20)   /* stop reading the channel above this */
#define MAX_NICS 8
#define MAX_LAYERS 24          /* microvm's virtio-mmio transports bound it anyway */
#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum { F_HELLO = 1, F_EXEC, F_STDIN, F_SIGNAL, F_SHUTDOWN, F_RESIZE, F_CLOCK };
enum { F_STATE = 0x81, F_STDOUT, F_STDERR, F_EXIT, F_WORKLOAD_EXIT };
enum { R_NO, R_ALWAYS, R_ON_FAILURE };
enum { W_STARTING, W_RUNNING, W_EXITED };

struct buf { char *p; size_t len, cap; };
struct strv { char **v; size_t n, cap; };

struct nic {
	char ifname[IFNAMSIZ], cur[IFNAMSIZ];
	unsigned char mac[6];
	bool dhcp, has_gw;
	struct in_addr addr, gw;
	int prefix, mtu;
};

struct session {
	struct session *next;
	uint32_t id;
	pid_t pid;
	int out, err, in;     /* our ends of the child's pipes, -1 once closed */
	struct buf inq;       /* stdin not yet written to the child */
	bool in_eof, reaped, orphan;
	bool tty;             /* out is a pty master (in a dup of it); no err */
	int code;
};

struct workload {
	int state;
	pid_t pid;
	int exit_code;          /* -1 until the first exit */
	int restarts;           /* restarts performed so far */
	int backoff;            /* consecutive quick failures */
	uint64_t started, restart_at, kill_at;
	bool shutting_down, final, acked;
	uint64_t poweroff_at;
};

/* util.c */
extern int console, devnull;
void logmsg(const char *fmt, ...);
uint64_t now_ms(void);
void buf_add(struct buf *b, const void *d, size_t n);
void buf_drop(struct buf *b, size_t n);
void buf_free(struct buf *b);
void strv_add(struct strv *s, const char *str);
void strv_free(struct strv *s);
void env_set(struct strv *e, const char *kv, bool override);
char *read_file(const char *path);
void write_file(const char *path, const char *data);
void mkdir_p(const char *path);
void xmount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data);
void pct_decode(char *s);
noreturn void power_off(void);
noreturn void fatal(const char *what);
void close_fd(int *fd);
void boot_mark(const char *step);
void boot_report(void);

/* boot.c: what the command line and /hypr/spec say */
extern struct strv dns;
extern char hostname[65];
extern bool probe, build_mode;
extern struct strv spec_argv, base_env;
extern char *spec_workdir, *spec_user;
extern int restart_policy, max_restarts, stop_signal, nlayers;
void early_setup(void);
void load_module_list(char *list);
void load_modules(void);
void parse_cmdline(void);
void setup_rootfs(void);
void write_etc(void);
void read_spec(void);

/* mounts.c */
extern char *shares_tag;
void parse_mount(char *v);
void setup_mounts(void);

/* user.c */
int switch_user(const char *user, struct strv *env);
int colon_fields(char *line, char **f, int n);

/* net.c */
extern struct nic nics[MAX_NICS];
extern int nnics;
void parse_net(char *v);
void setup_network(void);

/* userdata.c */
void parse_userdata(const char *kind, char *v);
void apply_userdata(void);
void start_userdata_once(void);

/* workload.c */
extern struct workload wl;
pid_t spawn(char *const argv[], char *const envp[], const char *cwd, const char *user, int fd0,
	    int fd1, int fd2, bool in_image);
void kill_group(pid_t pid, int sig);
void start_workload(void);
void handle_shutdown(const char *p, size_t n);
void reap(void);

/* exec.c */
extern struct session *sessions;
extern size_t stdin_total;   /* stdin bytes queued for all sessions */
void kill_sessions(void);
struct session *find_session(uint32_t id);
bool pump_pipe(struct session *s, int *fd, int type);
void handle_exec(uint32_t id, const char *p, size_t n);
void handle_resize(uint32_t id, const char *p, size_t n);
void finish_sessions(void);

/* layer.c */
int list_opaque_dirs(const char *root);

/* channel.c */
extern int chan;             /* the virtio-serial port, once found */
extern bool chan_up;         /* host end connected (as last reported) */
extern struct buf outq;      /* frames not yet written to the channel */
void send_frame(int type, uint32_t sid, const void *p, size_t n);
void rec(struct buf *b, const char *fmt, ...);
void send_state(const char *hello);
void flush_out(void);
void find_channel(void);
void probe_channel(void);
void read_channel(void);

#endif
