/*
 * NIC configuration from hypr.net=: each NIC is found by MAC, renamed, and
 * given its MTU, address and default route with ioctl(2) (no netlink, no
 * busybox); "dhcp" NICs run busybox udhcpc.
 */
#include "kestrel.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <net/route.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct nic nics[MAX_NICS];
int nnics;

static bool parse_mac(const char *s, unsigned char mac[6])
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2],
		      &mac[3], &mac[4], &mac[5]) == 6;
}

/* hypr.net=<ifname>,<addr>/<prefix>|dhcp,<gateway>,<mtu>,<mac> */
void parse_net(char *v)
{
	if (nnics == MAX_NICS)
		return;
	struct nic *n = &nics[nnics];
	char *f[5];
	for (int i = 0; i < 5; i++)
		f[i] = strsep(&v, ",");
	if (!f[4] || !*f[0] || strlen(f[0]) >= IFNAMSIZ || !parse_mac(f[4], n->mac)) {
		logmsg("bad hypr.net entry");
		return;
	}
	snprintf(n->ifname, sizeof n->ifname, "%s", f[0]);
	if (!strcmp(f[1], "dhcp")) {
		n->dhcp = true;
	} else {
		char *slash = strchr(f[1], '/');
		n->prefix = slash ? atoi(slash + 1) : 32;
		if (slash)
			*slash = 0;
		if (!inet_aton(f[1], &n->addr) || n->prefix < 0 || n->prefix > 32) {
			logmsg("bad address for %s", n->ifname);
			return;
		}
	}
	n->has_gw = *f[2] && inet_aton(f[2], &n->gw);
	n->mtu = atoi(f[3]);
	nnics++;
}

static struct ifreq ifr_for(const char *name)
{
	struct ifreq r;
	memset(&r, 0, sizeof r);
	memcpy(r.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
	return r;
}

static void ifioctl(int s, unsigned long req, struct ifreq *r, const char *what)
{
	if (ioctl(s, req, r) < 0)
		logmsg("%s %s: %s", what, r->ifr_name, strerror(errno));
}

static void set_ipv4(int s, const char *ifn, unsigned long req, struct in_addr a, const char *what)
{
	struct ifreq r = ifr_for(ifn);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = a };
	memcpy(&r.ifr_addr, &sin, sizeof sin);
	ifioctl(s, req, &r, what);
}

static void if_up(int s, const char *ifn)
{
	struct ifreq r = ifr_for(ifn);
	ifioctl(s, SIOCGIFFLAGS, &r, "get flags");
	r.ifr_flags |= IFF_UP;
	ifioctl(s, SIOCSIFFLAGS, &r, "up");
}

static void rename_if(int s, const char *from, const char *to)
{
	struct ifreq r = ifr_for(from);
	memcpy(r.ifr_newname, to, strnlen(to, IFNAMSIZ - 1));
	ifioctl(s, SIOCSIFNAME, &r, "rename");
}

static bool find_by_mac(const unsigned char mac[6], char out[IFNAMSIZ])
{
	DIR *d = opendir("/sys/class/net");
	struct dirent *e;
	bool found = false;
	while (d && !found && (e = readdir(d))) {
		char path[300];
		unsigned char m[6];
		snprintf(path, sizeof path, "/sys/class/net/%s/address", e->d_name);
		char *a = read_file(path);
		if (a && parse_mac(a, m) && !memcmp(m, mac, 6) && strlen(e->d_name) < IFNAMSIZ) {
			memcpy(out, e->d_name, strlen(e->d_name) + 1);
			found = true;
		}
		free(a);
	}
	if (d)
		closedir(d);
	return found;
}

static void run_dhcp(const char *ifn)
{
	pid_t p = fork();
	if (p == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
		if (!dns.n)
			setenv("HYPR_RESOLV", NEWROOT "/etc/resolv.conf", 1);
		/* Foreground until leased (or 5 tries failed), then daemonizes. */
		execl("/bin/busybox", "udhcpc", "-i", ifn, "-s", "/etc/udhcpc.script",
		      "-t", "5", "-T", "1", "-A", "3", "-b", (char *)NULL);
		_exit(127);
	}
	if (p > 0)
		waitpid(p, NULL, 0);
}

void setup_network(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		logmsg("socket: %s", strerror(errno));
		return;
	}
	if_up(s, "lo");
	/* Find each NIC by MAC (virtio_net probes synchronously, but be lenient). */
	for (int i = 0; i < nnics; i++) {
		for (int t = 0; t < 200 && !find_by_mac(nics[i].mac, nics[i].cur); t++)
			usleep(10000);
		if (!nics[i].cur[0])
			logmsg("no NIC with the MAC of %s", nics[i].ifname);
	}
	/* Rename in two phases so that swapped names cannot collide. */
	for (int i = 0; i < nnics; i++)
		if (nics[i].cur[0] && strcmp(nics[i].cur, nics[i].ifname)) {
			char tmp[IFNAMSIZ];
			snprintf(tmp, sizeof tmp, "hyprtmp%d", i);
			rename_if(s, nics[i].cur, tmp);
			memcpy(nics[i].cur, tmp, sizeof tmp);
		}
	for (int i = 0; i < nnics; i++)
		if (nics[i].cur[0] && strcmp(nics[i].cur, nics[i].ifname))
			rename_if(s, nics[i].cur, nics[i].ifname);
	for (int i = 0; i < nnics; i++) {
		struct nic *n = &nics[i];
		if (!n->cur[0])
			continue;
		if (n->mtu > 0) {
			struct ifreq r = ifr_for(n->ifname);
			r.ifr_mtu = n->mtu;
			ifioctl(s, SIOCSIFMTU, &r, "mtu");
		}
		if (!n->dhcp) {
			struct in_addr mask = { htonl(n->prefix ? ~0u << (32 - n->prefix) : 0) };
			set_ipv4(s, n->ifname, SIOCSIFADDR, n->addr, "address");
			set_ipv4(s, n->ifname, SIOCSIFNETMASK, mask, "netmask");
		}
		if_up(s, n->ifname);
		if (n->dhcp) {
			run_dhcp(n->ifname);
		} else if (n->has_gw) {
			struct rtentry rt;
			struct sockaddr_in any = { .sin_family = AF_INET };
			struct sockaddr_in gw = { .sin_family = AF_INET, .sin_addr = n->gw };
			memset(&rt, 0, sizeof rt);
			memcpy(&rt.rt_dst, &any, sizeof any);
			memcpy(&rt.rt_genmask, &any, sizeof any);
			memcpy(&rt.rt_gateway, &gw, sizeof gw);
			rt.rt_flags = RTF_UP | RTF_GATEWAY;
			rt.rt_dev = n->ifname;
			if (ioctl(s, SIOCADDRT, &rt) < 0)
				logmsg("default route via %s: %s", inet_ntoa(n->gw), strerror(errno));
		}
	}
	close(s);
}
