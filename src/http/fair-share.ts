/**
 * A per-process resource shared fairly between peers (client addresses): bytes of request bodies being
 * held (MAX_INFLIGHT_BODY_BYTES) and open connections (MAX_CONNECTIONS).
 *
 * A plain cap lets one peer take all of it: a single pod that opens connections, or starts uploads and
 * stalls them, would leave the API server nothing, and with failurePolicy Fail every pod creation in
 * the cluster would fail. So when a claim does not fit, room is made by preempting what other peers
 * hold, starting with the peer that holds the most, but only from a peer that would still hold more
 * than the asking peer, and only claims that are preemptible (an upload not yet complete, a connection
 * with no request being answered). A peer can therefore always get in while another holds more than
 * it does; what a peer has fully sent and is being answered is never cut. Many peers each holding an
 * equal share still fill it: that is what a NetworkPolicy is for (docs/SECURITY.md).
 */

export interface Claim {
  /** Who holds it: the client's address. */
  readonly peer: string;
  /** May it be cut to make room for another peer? */
  preemptible(): boolean;
  /** Cuts it (closes its connection). Called after its amount has been given back. */
  preempt(): void;
}

export interface FairShare<C extends Claim> {
  readonly capacity: number;
  readonly used: number;
  /** Amount held by `peer`. */
  heldBy(peer: string): number;
  /**
   * Adds `amount` to what `claim` holds, preempting claims of other peers when it does not fit and
   * they hold more; false (nothing taken, nothing cut) when it cannot be made to fit.
   */
  take(claim: C, amount: number): boolean;
  /** Gives back everything `claim` holds (idempotent). */
  release(claim: C): void;
}

interface Peer<C> {
  amount: number;
  /** Each claim of the peer with what it holds; insertion order is age (oldest first). */
  readonly claims: Map<C, number>;
}

export function createFairShare<C extends Claim>(capacity: number, onPreempt?: (claim: C, amount: number) => void): FairShare<C> {
  let used = 0;
  // One entry per peer holding anything: bounded by the claims, themselves bounded by connections.
  const peers = new Map<string, Peer<C>>();

  const release = (claim: C): number => {
    const peer = peers.get(claim.peer);
    const amount = peer?.claims.get(claim);
    if (peer === undefined || amount === undefined) return 0;
    peer.claims.delete(claim);
    peer.amount -= amount;
    used -= amount;
    if (peer.claims.size === 0) peers.delete(claim.peer);
    return amount;
  };

  /**
   * The claims to cut so that `need` more fits for `asker` (who will then hold `askerAfter`), or
   * undefined when that is not possible. Computed in full before anything is cut.
   */
  const victims = (asker: string, askerAfter: number, need: number): C[] | undefined => {
    const remaining = new Map<string, number>();
    for (const [name, peer] of peers) if (name !== asker) remaining.set(name, peer.amount);
    const cut = new Set<C>();
    const chosen: C[] = [];
    let freed = 0;
    while (freed < need) {
      // The peer holding the most that still holds more than the asker will, with a claim to cut.
      let best: { name: string; claim: C; amount: number } | undefined;
      for (const [name, amount] of remaining) {
        if (amount <= askerAfter || (best !== undefined && amount <= (remaining.get(best.name) ?? 0))) continue;
        let pick: { claim: C; amount: number } | undefined;
        // The largest preemptible claim of that peer (ties: the oldest).
        for (const [claim, held] of peers.get(name)?.claims ?? []) {
          if (held > 0 && !cut.has(claim) && (pick === undefined || held > pick.amount) && claim.preemptible()) pick = { claim, amount: held };
        }
        if (pick !== undefined) best = { name, ...pick };
      }
      if (best === undefined) return undefined;
      cut.add(best.claim);
      chosen.push(best.claim);
      freed += best.amount;
      remaining.set(best.name, (remaining.get(best.name) ?? 0) - best.amount);
    }
    return chosen;
  };

  return {
    capacity,
    get used() {
      return used;
    },
    heldBy(peer) {
      return peers.get(peer)?.amount ?? 0;
    },
    take(claim, amount) {
      if (used + amount > capacity) {
        const cut = victims(claim.peer, (peers.get(claim.peer)?.amount ?? 0) + amount, used + amount - capacity);
        if (cut === undefined) return false;
        for (const victim of cut) {
          const freed = release(victim);
          victim.preempt();
          onPreempt?.(victim, freed);
        }
      }
      let peer = peers.get(claim.peer);
      if (peer === undefined) {
        peer = { amount: 0, claims: new Map() };
        peers.set(claim.peer, peer);
      }
      peer.claims.set(claim, (peer.claims.get(claim) ?? 0) + amount);
      peer.amount += amount;
      used += amount;
      return true;
    },
    release(claim) {
      release(claim);
    },
  };
}

/** The peer of a socket: its remote address, an IPv4-mapped IPv6 address written as IPv4. */
export function peerOf(socket: { readonly remoteAddress?: string | undefined }): string {
  const address = socket.remoteAddress ?? 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
