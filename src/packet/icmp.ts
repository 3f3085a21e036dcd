/** ICMP for IPv4 (RFC 792): the few constants the stages use. */
export const ICMP_HEADER = 8;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;
export const OFF_ICMP_TYPE = 0;
export const OFF_ICMP_CHECKSUM = 2;
/** The TTL a reply starts with: Linux's default (net.ipv4.ip_default_ttl). */
export const REPLY_TTL = 64;
