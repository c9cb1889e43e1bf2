/*
 * kestrel: hypr's guest agent, PID 1 of every microVM.
 *
 * Boot is linear: mount /proc /sys /dev, load the modules listed in
 * /lib/modules/load.order (finit_module, no modprobe), mount the image's
 * squashfs layers (one disk each, hypr.layers=N) and stack them with
 * overlayfs under a tmpfs upper layer at /newroot, configure lo and the NICs
 * from hypr.net= with ioctl(2) (busybox udhcpc only for "dhcp"), write
 * resolv.conf, hostname and hosts into /newroot and start the workload
 * described by /hypr/spec.  The agent stays in the initramfs; the workload
 * and exec sessions are chrooted into /newroot.
 *
 * After that everything happens in one single-threaded poll(2) loop.
 * SIGCHLD and SIGIO are blocked and read from a signalfd, so reaping and
 * control-channel hot-plug are ordinary events.  When the workload ends for
 * good the agent sends WORKLOAD_EXIT, waits (at most a second) for the host
 * to hang up as acknowledgement, syncs and powers off.
 */
#include "kestrel.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static int sigfd = -1;
static uint64_t chan_scan_at, chan_scan_until, chan_probe_at;

static void add_poll(struct pollfd *p, int *np, int fd, short ev)
{
	p[*np] = (struct pollfd){ .fd = fd, .events = ev };
	(*np)++;
}

static int timeout_until(uint64_t at, uint64_t now, int cur)
{
	if (!at)
		return cur;
	int t = at <= now ? 0 : (int)(at - now);
	return cur < 0 || t < cur ? t : cur;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--opaque-dirs"))
		return list_opaque_dirs(argv[2]);
	boot_mark("init");
	early_setup();
	boot_mark("mounts");
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGIO);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	parse_cmdline();
	if (probe) {
		logmsg("probe ok");
		power_off();
	}
	load_modules();
	boot_mark("modules");
	/* Open the port now if its name is in: the host's HELLO then travels while we mount
	 * and configure; otherwise the loop below keeps looking. */
	find_channel();
	setup_rootfs();
	boot_mark("rootfs");
	read_spec();
	setup_network();
	boot_mark("net");
	write_etc();
	setup_mounts();
	boot_mark("volumes");
	apply_userdata();
	if (!build_mode) /* a build VM only runs the steps the host sends */
		start_workload();
	start_userdata_once();
	boot_mark("workload");
	chan_scan_until = now_ms() + 30000;

	for (;;) {
		uint64_t now = now_ms();
		if (chan < 0 && now >= chan_scan_at) {
			find_channel();
			chan_scan_at = now + (now < chan_scan_until ? 10 : 1000);
		}
		if (chan >= 0 && !chan_up && now >= chan_probe_at) {
			probe_channel(); /* safety net should a SIGIO be missed */
			chan_probe_at = now + 1000;
		}
		if (wl.state == W_STARTING && wl.restart_at && now >= wl.restart_at && !wl.final)
			start_workload();
		if (wl.kill_at && wl.state == W_RUNNING && now >= wl.kill_at) {
			kill_group(wl.pid, SIGKILL);
			wl.kill_at = 0;
		}
		finish_sessions();
		flush_out();
		/* Wait for the host to take the final frames, or 1 s for one to come. */
		if (wl.final && (wl.acked || now >= wl.poweroff_at))
			power_off();

		static struct pollfd *pf;
		static struct session **owner;
		static size_t cap;
		size_t need = 2;
		for (struct session *s = sessions; s; s = s->next)
			need += 3;
		if (need > cap) {
			struct pollfd *npf = realloc(pf, need * sizeof *pf);
			struct session **no = npf ? realloc(owner, need * sizeof *no) : NULL;
			if (npf)
				pf = npf;
			if (!no)
				continue;
			owner = no;
			cap = need;
		}
		int np = 0, timeout = -1;
		add_poll(pf, &np, sigfd, POLLIN);
		owner[0] = NULL;
		if (chan_up) {
			owner[np] = NULL;
			add_poll(pf, &np, chan,
				 (stdin_total < STDIN_HIGH ? POLLIN : 0) | (outq.len ? POLLOUT : 0));
		}
		for (struct session *s = sessions; s; s = s->next) {
			if (s->orphan)
				continue;
			if (outq.len < OUTQ_HIGH && s->out >= 0)
				owner[np] = s, add_poll(pf, &np, s->out, POLLIN);
			if (outq.len < OUTQ_HIGH && s->err >= 0)
				owner[np] = s, add_poll(pf, &np, s->err, POLLIN);
			if (s->in >= 0 && s->inq.len)
				owner[np] = s, add_poll(pf, &np, s->in, POLLOUT);
		}
		if (chan < 0)
			timeout = timeout_until(chan_scan_at, now, timeout);
		else if (!chan_up)
			timeout = timeout_until(chan_probe_at, now, timeout);
		if (wl.state == W_STARTING && !wl.final)
			timeout = timeout_until(wl.restart_at, now, timeout);
		if (wl.state == W_RUNNING)
			timeout = timeout_until(wl.kill_at, now, timeout);
		if (wl.final)
			timeout = timeout_until(wl.poweroff_at, now, timeout);

		if (poll(pf, np, timeout) < 0)
			continue;

		for (int i = 0; i < np; i++) {
			short r = pf[i].revents;
			if (!r)
				continue;
			struct session *s = owner[i];
			if (pf[i].fd == sigfd) {
				struct signalfd_siginfo si;
				bool io = false;
				while (read(sigfd, &si, sizeof si) == sizeof si)
					io |= si.ssi_signo == SIGIO;
				reap();
				if (io)
					probe_channel();
			} else if (!s) { /* the channel */
				if (r & (POLLHUP | POLLERR))
					probe_channel();
				else if (r & POLLIN)
					read_channel();
				if (r & POLLOUT)
					flush_out();
			} else if (s->orphan) {
				continue;
			} else if (pf[i].fd == s->out) {
				pump_pipe(s, &s->out, F_STDOUT);
			} else if (pf[i].fd == s->err) {
				pump_pipe(s, &s->err, F_STDERR);
			} else if (pf[i].fd == s->in) {
				ssize_t w = write(s->in, s->inq.p, s->inq.len);
				if (w >= 0) {
					buf_drop(&s->inq, (size_t)w);
					stdin_total -= (size_t)w;
				} else if (errno != EAGAIN) {
					stdin_total -= s->inq.len; /* the child closed its stdin */
					buf_free(&s->inq);
					close_fd(&s->in);
				}
				if (s->in >= 0 && !s->inq.len && s->in_eof)
					close_fd(&s->in);
			}
		}
	}
}
