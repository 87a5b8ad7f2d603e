import OrganizationIcon from '@mui/icons-material/Business';
import IntegrationIcon from '@mui/icons-material/Hub';
import ApiIcon from '@mui/icons-material/Key';
import ActivityIcon from '@mui/icons-material/ListAlt';
import MailIcon from '@mui/icons-material/Mail';
import UserIcon from '@mui/icons-material/People';
import RoleIcon from '@mui/icons-material/Security';
import { Admin, CustomRoutes, memoryStore, Resource } from 'react-admin';
import { BrowserRouter, Route } from 'react-router-dom';
import { authProvider } from './auth-provider';
import { Dashboard } from './dashboard';
import { dataProvider } from './data-provider';
import { ForgotPasswordPage } from './forgot-password-page';
import { ConsoleLayout } from './layout';
import { LoginPage } from './login-page';
import { ActiveUserList, ActivityList, ActivityStatList, SessionList } from './resources/activity';
import { ApiKeyCreate, ApiKeyList, ApiKeyShow } from './resources/api-keys';
import {
  ModuleCreate,
  ModuleEdit,
  ModuleList,
  OrganizationCreate,
  OrganizationEdit,
  OrganizationList,
  OrganizationShow,
  PermissionCreate,
  PermissionEdit,
  PermissionList,
  RoleCreate,
  RoleEdit,
  RoleList,
  RoleShow,
} from './resources/catalog';
import { IntegrationCreate, IntegrationEdit, IntegrationList, IntegrationShow } from './resources/integrations';
import { MailList, MailShow } from './resources/mail';
import { UserTypeCreate, UserTypeEdit, UserTypeList } from './resources/user-types';
import { UserCreate, UserEdit, UserList, UserShow } from './resources/users';
import { SetPasswordPage } from './set-password-page';
import { VerifyEmailPage } from './verify-email-page';

export function App() {
  // Real paths under /admin/ (the server answers every one with index.html), not react-admin's default hash URLs.
  return (
    <BrowserRouter basename="/admin">
      <Admin
        title="Gatehouse admin"
        dataProvider={dataProvider}
        authProvider={authProvider}
        loginPage={LoginPage}
        dashboard={Dashboard}
        layout={ConsoleLayout}
        requireAuth
        // List filters and UI preferences stay in memory: nothing about this session is left in localStorage.
        store={memoryStore()}
        disableTelemetry
      >
        {/* Where mailed links land (reset, invitation, verification), and where a reset link is asked for:
            public, outside the layout, no sign-in. */}
        <CustomRoutes noLayout>
          <Route path="/forgot-password" element={<ForgotPasswordPage />} />
          <Route path="/set-password" element={<SetPasswordPage />} />
          <Route path="/verify-email" element={<VerifyEmailPage />} />
        </CustomRoutes>
        {/* recordRepresentation: how page titles, delete confirmations and references name a record. */}
        <Resource
          name="users"
          recordRepresentation="email"
          list={UserList}
          show={UserShow}
          create={UserCreate}
          edit={UserEdit}
          icon={UserIcon}
        />
        <Resource
          name="organizations"
          recordRepresentation="code"
          list={OrganizationList}
          show={OrganizationShow}
          create={OrganizationCreate}
          edit={OrganizationEdit}
          icon={OrganizationIcon}
        />
        <Resource
          name="roles"
          recordRepresentation="code"
          list={RoleList}
          show={RoleShow}
          create={RoleCreate}
          edit={RoleEdit}
          icon={RoleIcon}
        />
        <Resource
          name="permissions"
          recordRepresentation="code"
          list={PermissionList}
          create={PermissionCreate}
          edit={PermissionEdit}
        />
        <Resource
          name="modules"
          recordRepresentation="code"
          list={ModuleList}
          create={ModuleCreate}
          edit={ModuleEdit}
        />
        <Resource
          name="api-keys"
          recordRepresentation="name"
          options={{ label: 'API keys' }}
          list={ApiKeyList}
          show={ApiKeyShow}
          create={ApiKeyCreate}
          icon={ApiIcon}
        />
        <Resource
          name="integrations"
          recordRepresentation="name"
          list={IntegrationList}
          show={IntegrationShow}
          create={IntegrationCreate}
          edit={IntegrationEdit}
          icon={IntegrationIcon}
        />
        <Resource name="activities" list={ActivityList} icon={ActivityIcon} />
        <Resource name="active-users" options={{ label: 'Active users' }} list={ActiveUserList} />
        <Resource name="activity-stats" options={{ label: 'Activity stats' }} list={ActivityStatList} />
        <Resource name="user-sessions" options={{ label: 'Sessions' }} list={SessionList} />
        <Resource
          name="user-types"
          recordRepresentation="code"
          options={{ label: 'User types' }}
          list={UserTypeList}
          create={UserTypeCreate}
          edit={UserTypeEdit}
        />
        <Resource
          name="mail-outbox"
          recordRepresentation="subject"
          options={{ label: 'Mail' }}
          list={MailList}
          show={MailShow}
          icon={MailIcon}
        />
        <Resource name="user-roles" />
        <Resource name="integration-health-checks" />
        <Resource name="integration-logs" />
        {/* The pickers' catalog, keyed by what the API takes: roles by id, the rest by code. */}
        <Resource name="assignable-roles" />
        <Resource name="permission-codes" />
        <Resource name="module-codes" />
      </Admin>
    </BrowserRouter>
  );
}
