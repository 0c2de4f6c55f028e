/* Whether a connection comes from proxy_networks (the mail proxies: nginx).
 * The socket peer decides, never an address a PROXY header carries. */
#include "server/base/config.h"
#include "server/base/conn.h"

bool conn_from_proxy_network(struct conn *c)
{
    const struct conf *cf = conn_conf(c);
    const struct sockaddr *peer = conn_info(c)->peer;

    return peer && cf->n_proxy_nets && conf_net_match(cf->proxy_networks, cf->n_proxy_nets, peer);
}
