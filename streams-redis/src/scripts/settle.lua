-- The second half of a move whose new copy went to another slot (Redis
-- Cluster): after the copy was written, acknowledges (and optionally
-- deletes) the original, only if it is still pending, and pending for the
-- fencing consumer when one is given. Also run before the copy, with
-- ARGV[5] = '0', to check without acknowledging.
--
-- KEYS[1]: the source stream.
-- ARGV[1]: group. ARGV[2]: entry id. ARGV[3]: fencing consumer ('' for none).
-- ARGV[4]: '1' to delete the source entry after acknowledging it.
-- ARGV[5]: '1' to acknowledge, '0' to check only.
--
-- Returns {'moved', ''}, {'not_pending'} or {'owned_by', consumer}.
local source = KEYS[1]
local group, id, fence = ARGV[1], ARGV[2], ARGV[3]

-- NOGROUP (no stream or no group) means the entry is not pending either.
local refused = refusal_to_settle(source, group, id, fence)
if refused and refused[1] == 'error' then
  return redis.error_reply(refused[2])
elseif refused then
  return refused
end
if ARGV[5] == '1' then
  redis.call('XACK', source, group, id)
  if ARGV[4] == '1' then
    redis.call('XDEL', source, id)
  end
end
return {'moved', ''}
