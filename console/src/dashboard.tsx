import { Card, CardContent, Grid, Typography } from '@mui/material';
import { useEffect, useState } from 'react';
import { Title, useGetIdentity, useGetList, usePermissions } from 'react-admin';
import { type Access, canDo } from './auth-provider';
import { api } from './http';

interface UserStats {
  total_users: number;
  total_active_users: number;
  by_user_type: { user_type: string | null; count: number }[];
}

function Figure({ label, value, testId }: { label: string; value: number | string | undefined; testId: string }) {
  return (
    <Grid size={{ xs: 12, sm: 6, md: 3 }}>
      <Card>
        <CardContent>
          <Typography color="text.secondary" gutterBottom>
            {label}
          </Typography>
          <Typography variant="h4" component="p" data-testid={testId}>
            {value ?? '—'}
          </Typography>
        </CardContent>
      </Card>
    </Grid>
  );
}

/**
 * User counts come from the export statistics, which staff users (and superusers) may read; others see
 * the activity figures only, and are not sent to a route that refuses them.
 */
function useUserStats(mayRead: boolean): UserStats | undefined {
  const [stats, setStats] = useState<UserStats>();
  useEffect(() => {
    if (!mayRead) return;
    let live = true;
    api<{ stats: UserStats }>('/api/admin/export-stats/?include_inactive=true')
      .then((answer) => live && setStats(answer.stats))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [mayRead]);
  return stats;
}

/** The landing page: how many users there are, who is active now, and today's activity. */
export function Dashboard() {
  const { permissions } = usePermissions<Access>();
  const mayReadActivity = canDo(permissions, 'activities', 'list');
  const { identity } = useGetIdentity();
  const stats = useUserStats(Boolean(identity?.isStaff));
  const active = useGetList('active-users', { pagination: { page: 1, perPage: 100 } }, { enabled: mayReadActivity });
  const today = useGetList(
    'activity-stats',
    { pagination: { page: 1, perPage: 1 }, filter: { period: 'day' } },
    { enabled: mayReadActivity },
  );
  const day = today.data?.[0];
  return (
    <Grid container spacing={2} sx={{ mt: 1 }}>
      <Title title="Gatehouse admin" />
      <Figure label="Users" value={stats?.total_users} testId="total-users" />
      <Figure label="Active accounts" value={stats?.total_active_users} testId="active-accounts" />
      <Figure label="Active now" value={mayReadActivity ? active.data?.length : undefined} testId="active-now" />
      <Figure
        label="Activities today"
        value={mayReadActivity ? (day?.total_activities ?? 0) : undefined}
        testId="activities-today"
      />
    </Grid>
  );
}
